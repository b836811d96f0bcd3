"""The long-running actors (ingester, syncer, metrics reporter): their dependencies are Protocols,
and only the composition root, `kaleido.service`, wires them to the rest."""
