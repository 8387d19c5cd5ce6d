"""Hard-negative mining: its arguments, candidate pools, the pure negative selection, and the miner (encode,
index, search, select, score teachers, write). May import common, data, models and retrieval.
"""
