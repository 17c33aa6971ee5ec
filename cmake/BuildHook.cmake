# BuildHook.cmake: record every C and C++ target of this project with buildhook.
#
#   list(APPEND CMAKE_MODULE_PATH "<output of `buildhook cmake-dir`>")   # or -DCMAKE_MODULE_PATH=…
#   include(BuildHook)
#
# Every compile and every link of C and C++ targets then runs through
# `buildhook-cc` in its launcher form (`buildhook-cc <compiler> <args>`), which
# records objects and links in the store ($BUILDHOOK_STORE at build time) and
# composes with a launcher you already use (ccache stays after buildhook).
# Works with the Ninja and Makefile generators.  Targets defined before the
# include() in the same directory are covered too.
#
# Cache variable BUILDHOOK_LAUNCHER: path of buildhook-cc (found on PATH, or
# next to the Python that installed this module).

include_guard(GLOBAL)

get_filename_component(_buildhook_prefix "${CMAKE_CURRENT_LIST_DIR}/../../../../../.." ABSOLUTE)
find_program(BUILDHOOK_LAUNCHER
  NAMES buildhook-cc
  HINTS "${_buildhook_prefix}/bin" "${CMAKE_CURRENT_LIST_DIR}/../.venv/bin"
  DOC "buildhook-cc, the launcher that records every compile and link")
if(NOT BUILDHOOK_LAUNCHER)
  message(FATAL_ERROR
    "BuildHook: buildhook-cc not found; put the folder holding it on PATH "
    "or pass -DBUILDHOOK_LAUNCHER=/path/to/buildhook-cc")
endif()

foreach(_buildhook_lang C CXX)
  set(CMAKE_${_buildhook_lang}_COMPILER_LAUNCHER
      "${BUILDHOOK_LAUNCHER}" ${CMAKE_${_buildhook_lang}_COMPILER_LAUNCHER})
  set(CMAKE_${_buildhook_lang}_LINKER_LAUNCHER
      "${BUILDHOOK_LAUNCHER}" ${CMAKE_${_buildhook_lang}_LINKER_LAUNCHER})
endforeach()

if(CMAKE_VERSION VERSION_LESS 3.21)
  # No <LANG>_LINKER_LAUNCHER before CMake 3.21: launch every link rule instead.
  set_property(GLOBAL PROPERTY RULE_LAUNCH_LINK "${BUILDHOOK_LAUNCHER}")
endif()

# Targets created before include(BuildHook) in this directory.
get_property(_buildhook_targets DIRECTORY PROPERTY BUILDSYSTEM_TARGETS)
foreach(_buildhook_target IN LISTS _buildhook_targets)
  get_target_property(_buildhook_type ${_buildhook_target} TYPE)
  if(_buildhook_type MATCHES "EXECUTABLE|LIBRARY" AND NOT _buildhook_type STREQUAL "INTERFACE_LIBRARY")
    foreach(_buildhook_lang C CXX)
      get_target_property(_buildhook_old ${_buildhook_target} ${_buildhook_lang}_COMPILER_LAUNCHER)
      if(NOT _buildhook_old)
        set(_buildhook_old "")
      endif()
      if(NOT "${_buildhook_old}" MATCHES "buildhook-cc")
        set_property(TARGET ${_buildhook_target} PROPERTY
          ${_buildhook_lang}_COMPILER_LAUNCHER "${BUILDHOOK_LAUNCHER}" ${_buildhook_old})
        set_property(TARGET ${_buildhook_target} PROPERTY
          ${_buildhook_lang}_LINKER_LAUNCHER "${BUILDHOOK_LAUNCHER}")
      endif()
    endforeach()
  endif()
endforeach()

message(STATUS "BuildHook: recording C/C++ compiles and links with ${BUILDHOOK_LAUNCHER}")
