"""Training: folds -> per-fold features -> the stages of one fold (stacking, pretraining, the scored model) -> the fold predictor -> the seed x fold loop."""
