"""The red-team suite: every attack tried on Kaleido, each shown refused or bounded."""
