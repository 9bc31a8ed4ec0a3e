"""The digital twin of the training environment, shared by the trainer, the backtest, the preditor and paper.

Modules: ``bars`` (the bar window), ``features`` (HMM and PPO observation features), ``hmm`` (causal state
decoding), ``actions`` and ``position`` (the 7 actions and the virtual position cost model, stdlib only),
``twin`` (the one step function and the state snapshot), ``metrics`` (backtest/paper statistics).

This package init imports nothing, so ``common.twin.position`` and ``common.twin.actions`` stay importable
without numpy.
"""
