"""Reading ELF files, archives and linker maps.

Modules here that the runtime applier may need (``buildid``) use only the
standard library; pyelftools is imported only where whole objects are parsed.
"""
