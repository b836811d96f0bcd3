"""The schema migrations, `NNNN_name.sql`, applied in order by `kaleido.migrate`."""
