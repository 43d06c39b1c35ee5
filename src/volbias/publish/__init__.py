"""Publishing the book: one place for its version and addresses, metadata sync, the release archive.

- :mod:`volbias.publish.metadata` reads the version and public addresses from ``pyproject.toml``;
- :mod:`volbias.publish.sync` copies them into the files that repeat them (``make sync-metadata``);
- :mod:`volbias.publish.release` packs the built book into the citable archive (``make release``).
"""
