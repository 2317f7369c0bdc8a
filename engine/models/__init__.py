"""Models: AutoMLP (the paper's Eq. 1-4 and 8), the SASRec baseline, and the item embedding they share.
May import `engine.core` and `engine.data`."""
