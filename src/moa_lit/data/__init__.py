"""Reading, validating and generating data in the Kaggle lish-moa layout."""
