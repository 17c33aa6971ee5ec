"""The runtime applier: loads a .po into a running process (DESIGN §5).

Production hosts install only this: it imports the standard library,
pyelftools and buildhook's .po reader, never the build side (wrap, store,
diff); a test enforces it, and ``buildhook applier-zipapp`` packs it alone.
"""
