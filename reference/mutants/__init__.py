"""Mutation testing of the judges: first-order mutants of scratch_cnn, each judged by the judges."""
