// A long-running C++ process that parses protobuf messages under load, for
// bench/realworld.py's protobuf proof: libprotobuf.so is patched live in it.
//
//   protobuf_host serve PORT                 listen on 127.0.0.1:PORT
//   protobuf_host load PORT SECONDS CONNS    the load generator (a burst)
//
// The message type is built at run time (a FileDescriptorProto by hand, then
// DynamicMessage), so no protoc is needed and every parse runs the library's
// reflection-driven parser, unknown fields and groups included:
//
//   message Request {                         // package bench, proto2
//     optional string key = 1;
//     optional int64 increment = 2;
//     optional Inner inner = 3;               // Inner { string tag = 1; fixed64 check = 2; }
//     repeated int32 values = 4 [packed = true];
//     optional group Extra = 5 { optional string note = 1; }
//   }                                         // + whatever unknown fields the client adds
//
// A request is a 4-byte big-endian length and a serialized Request; the answer
// is one line, "OK <counter> <key> tag=.. check=.. sum=.. note=.. unknown=..
// depth=.. hash=..", or "ERR parse".  The counter of the key goes up by the
// increment (state kept in the process); depth is the deepest nesting of
// unknown groups; hash is FNV-1a of the message serialized again, so a client
// that sent canonical bytes can check the whole parse round trip.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>
#include <google/protobuf/unknown_field_set.h>

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::DynamicMessageFactory;
using google::protobuf::FieldDescriptorProto;
using google::protobuf::FileDescriptorProto;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

namespace {

FieldDescriptorProto* AddField(google::protobuf::DescriptorProto* message, const char* name, int number,
                               FieldDescriptorProto::Type type, const char* type_name = nullptr,
                               FieldDescriptorProto::Label label = FieldDescriptorProto::LABEL_OPTIONAL) {
  FieldDescriptorProto* field = message->add_field();
  field->set_name(name);
  field->set_number(number);
  field->set_type(type);
  field->set_label(label);
  if (type_name != nullptr) field->set_type_name(type_name);
  return field;
}

// The Request type, from a descriptor built by hand (what protoc would emit for bench.proto).
class Schema {
 public:
  Schema() {
    FileDescriptorProto file;
    file.set_name("bench.proto");
    file.set_package("bench");
    auto* inner = file.add_message_type();
    inner->set_name("Inner");
    AddField(inner, "tag", 1, FieldDescriptorProto::TYPE_STRING);
    AddField(inner, "check", 2, FieldDescriptorProto::TYPE_FIXED64);
    auto* request = file.add_message_type();
    request->set_name("Request");
    AddField(request, "key", 1, FieldDescriptorProto::TYPE_STRING);
    AddField(request, "increment", 2, FieldDescriptorProto::TYPE_INT64);
    AddField(request, "inner", 3, FieldDescriptorProto::TYPE_MESSAGE, ".bench.Inner");
    AddField(request, "values", 4, FieldDescriptorProto::TYPE_INT32, nullptr, FieldDescriptorProto::LABEL_REPEATED)
        ->mutable_options()->set_packed(true);
    AddField(request, "extra", 5, FieldDescriptorProto::TYPE_GROUP, ".bench.Request.Extra");
    auto* extra = request->add_nested_type();
    extra->set_name("Extra");
    AddField(extra, "note", 1, FieldDescriptorProto::TYPE_STRING);
    if (pool_.BuildFile(file) == nullptr) {
      std::fprintf(stderr, "protobuf_host: the descriptor did not build\n");
      std::exit(2);
    }
    request_ = pool_.FindMessageTypeByName("bench.Request");
    prototype_ = factory_.GetPrototype(request_);
  }

  std::unique_ptr<Message> New() const { return std::unique_ptr<Message>(prototype_->New()); }
  const Descriptor* request() const { return request_; }

 private:
  DescriptorPool pool_;
  DynamicMessageFactory factory_{&pool_};
  const Descriptor* request_ = nullptr;
  const Message* prototype_ = nullptr;
};

uint64_t Fnv1a(const std::string& bytes) {
  uint64_t hash = 14695981039346656037ULL;
  for (unsigned char byte : bytes) hash = (hash ^ byte) * 1099511628211ULL;
  return hash;
}

// Fields and deepest group nesting of an unknown-field set.
void CountUnknown(const UnknownFieldSet& set, int level, int* fields, int* depth) {
  for (int i = 0; i < set.field_count(); ++i) {
    ++*fields;
    if (set.field(i).type() == UnknownField::TYPE_GROUP) {
      if (level + 1 > *depth) *depth = level + 1;
      CountUnknown(set.field(i).group(), level + 1, fields, depth);
    }
  }
}

bool ReadAll(int fd, char* data, size_t size) {
  while (size > 0) {
    ssize_t got = recv(fd, data, size, 0);
    if (got <= 0) return false;
    data += got;
    size -= static_cast<size_t>(got);
  }
  return true;
}

bool WriteAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t put = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (put <= 0) return false;
    sent += static_cast<size_t>(put);
  }
  return true;
}

bool ReadFrame(int fd, std::string* payload) {
  uint32_t length;
  if (!ReadAll(fd, reinterpret_cast<char*>(&length), sizeof length)) return false;
  length = ntohl(length);
  if (length > (64u << 20)) return false;
  payload->resize(length);
  return ReadAll(fd, payload->data(), length);
}

bool ReadLine(int fd, std::string* line) {
  line->clear();
  char c;
  while (recv(fd, &c, 1, 0) == 1) {
    if (c == '\n') return true;
    line->push_back(c);
  }
  return false;
}

// --- the server ---------------------------------------------------------------------

class Server {
 public:
  explicit Server(const Schema& schema) : schema_(schema) {}

  std::string Answer(const std::string& payload) {
    std::unique_ptr<Message> request = schema_.New();
    if (!request->ParseFromString(payload)) return "ERR parse\n";
    const Reflection* reflection = request->GetReflection();
    const Descriptor* type = schema_.request();
    std::string key = reflection->GetString(*request, type->FindFieldByName("key"));
    int64_t increment = reflection->GetInt64(*request, type->FindFieldByName("increment"));
    const Message& inner = reflection->GetMessage(*request, type->FindFieldByName("inner"));
    const Descriptor* inner_type = inner.GetDescriptor();
    const Message& extra = reflection->GetMessage(*request, type->FindFieldByName("extra"));
    int64_t sum = 0;
    const auto* values = type->FindFieldByName("values");
    for (int i = 0; i < reflection->FieldSize(*request, values); ++i)
      sum += reflection->GetRepeatedInt32(*request, values, i);
    int fields = 0, depth = 0;
    CountUnknown(reflection->GetUnknownFields(*request), 0, &fields, &depth);
    int64_t counter;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      counter = counters_[key] += increment;
    }
    char line[512];
    std::snprintf(line, sizeof line, "OK %" PRId64 " %s tag=%s check=%016" PRIx64 " sum=%" PRId64
                  " note=%s unknown=%d depth=%d hash=%016" PRIx64 "\n",
                  counter, key.c_str(), inner.GetReflection()->GetString(inner, inner_type->FindFieldByName("tag")).c_str(),
                  inner.GetReflection()->GetUInt64(inner, inner_type->FindFieldByName("check")), sum,
                  extra.GetReflection()->GetString(extra, extra.GetDescriptor()->FindFieldByName("note")).c_str(),
                  fields, depth, Fnv1a(request->SerializeAsString()));
    return line;
  }

  void Serve(int fd) {
    std::string payload;
    while (ReadFrame(fd, &payload) && WriteAll(fd, Answer(payload))) {
    }
    close(fd);
  }

 private:
  const Schema& schema_;
  std::mutex mutex_;
  std::map<std::string, int64_t> counters_;
};

int Listen(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // 127.0.0.1 only
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || listen(fd, 64) != 0) {
    std::perror("protobuf_host: bind/listen");
    std::exit(2);
  }
  return fd;
}

int Serve(int port) {
  Schema schema;
  Server server(schema);
  int listener = Listen(port);
  std::printf("protobuf_host: listening on 127.0.0.1:%d\n", port);
  std::fflush(stdout);
  for (;;) {
    int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) continue;
    std::thread([&server, fd] { server.Serve(fd); }).detach();  // a thread per connection
  }
}

// --- the load generator -------------------------------------------------------------

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One connection's requests, built and serialized with the library, every answer checked:
// the counter of its own key goes up by exactly the increment, and the server's
// re-serialization hashes as the bytes sent.
std::string LoadConnection(const Schema& schema, int port, int number, double seconds, long* requests) {
  int fd = Connect(port);
  if (fd < 0) return "connect failed";
  const Descriptor* type = schema.request();
  std::string key = "burst-" + std::to_string(getpid()) + "-" + std::to_string(number);
  int64_t expected = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::string error;
  for (long count = 1; std::chrono::steady_clock::now() < deadline; ++count) {
    std::unique_ptr<Message> request = schema.New();
    const Reflection* reflection = request->GetReflection();
    reflection->SetString(request.get(), type->FindFieldByName("key"), key);
    reflection->SetInt64(request.get(), type->FindFieldByName("increment"), count % 5 + 1);
    Message* inner = reflection->MutableMessage(request.get(), type->FindFieldByName("inner"));
    inner->GetReflection()->SetString(inner, inner->GetDescriptor()->FindFieldByName("tag"), "t" + std::to_string(count));
    for (int i = 0; i < 4; ++i) reflection->AddInt32(request.get(), type->FindFieldByName("values"), count + i);
    UnknownFieldSet* unknown = reflection->MutableUnknownFields(request.get());
    unknown->AddVarint(20, static_cast<uint64_t>(count));
    UnknownFieldSet* group = unknown->AddGroup(22);
    for (int level = 1; level < count % 8 + 1; ++level) group = group->AddGroup(22);
    group->AddLengthDelimited(21, "leaf");
    std::string payload = request->SerializeAsString();
    uint32_t length = htonl(static_cast<uint32_t>(payload.size()));
    std::string line;
    if (!WriteAll(fd, std::string(reinterpret_cast<char*>(&length), sizeof length) + payload) ||
        !ReadLine(fd, &line)) {
      error = "connection lost at request " + std::to_string(count);
      break;
    }
    expected += count % 5 + 1;
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016" PRIx64, Fnv1a(payload));
    if (line.rfind("OK " + std::to_string(expected) + " " + key + " ", 0) != 0 ||
        line.find("depth=" + std::to_string(count % 8 + 1) + " hash=" + hash) == std::string::npos) {
      error = "request " + std::to_string(count) + ": " + line.substr(0, 200);
      break;
    }
    *requests = count;
  }
  close(fd);
  return error;
}

int Load(int port, double seconds, int connections) {
  Schema schema;
  std::vector<long> requests(connections, 0);
  std::vector<std::string> errors(connections);
  std::vector<std::thread> threads;
  for (int n = 0; n < connections; ++n)
    threads.emplace_back([&, n] { errors[n] = LoadConnection(schema, port, n, seconds, &requests[n]); });
  long total = 0;
  int failed = 0;
  for (int n = 0; n < connections; ++n) {
    threads[n].join();
    total += requests[n];
    if (!errors[n].empty()) {
      ++failed;
      std::printf("error: connection %d: %s\n", n, errors[n].c_str());
    }
  }
  std::printf("requests %ld errors %d\n", total, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "serve" && argc == 3) return Serve(std::atoi(argv[2]));
  if (mode == "load" && argc == 5) return Load(std::atoi(argv[2]), std::atof(argv[3]), std::atoi(argv[4]));
  std::fprintf(stderr, "usage: protobuf_host serve PORT | load PORT SECONDS CONNECTIONS\n");
  return 2;
}
