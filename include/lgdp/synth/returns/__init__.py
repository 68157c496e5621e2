"""Per-return generators: one module per spec id, each making rows that pass every rule of its
spec and offering one fault per rule code. ``lgdp.synth.generator_for`` picks them by spec id."""
