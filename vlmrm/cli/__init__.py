"""Entry points over every task: ``train_rm.py`` / ``eval_rm.py`` dispatch on ``task:``, and the
data validation command. The only layer that may import several tasks.
"""
