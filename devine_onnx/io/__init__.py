"""Shared input/output: atomic outputs, incremental writers, CF metadata, HDF5 chunk writing."""
