"""Training pairs without labels: independent crops, titles as queries, InPars query generation with an
optional filter. May import common, data and models.
"""
