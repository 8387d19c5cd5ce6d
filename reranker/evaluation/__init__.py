"""Evaluation: its arguments, the driver (load, first stage, rerank, metrics, fusion), and the outputs
(markdown table, results.json, run files, the chart). May import common, data, models and retrieval.
"""
