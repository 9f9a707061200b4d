"""Opaque networks: inert loading of untrusted files, structure and motifs, exact simulation,
decompilation to logic, identification of the function, and inversion."""
