"""The ``.po`` patch object: writing (build side) and reading/validating (also the applier's).

``reader`` and ``format`` use only the standard library and pyelftools: the
runtime applier imports them without the build side.
"""
