"""Evaluation: HR, NDCG and MRR under full ranking and sampled-negative protocols. May import `engine.core`,
`engine.data` and `engine.models`."""
