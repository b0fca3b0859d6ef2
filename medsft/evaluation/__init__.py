"""The pieces of ``python -m medsft.evaluate``: batched scoring (``scoring``), the perplexity and PubMedQA tasks,
and the report (table, JSON, predictions, plots)."""
