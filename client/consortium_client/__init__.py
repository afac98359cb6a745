"""Consortium partner library.

Pure code shared by partners and the server: hash-value parsing, DSSE signing and
verification, log leaves, Merkle proofs and tiles. It never imports Django, so a partner
can install it alone.
"""
