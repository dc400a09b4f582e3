"""Command names kept from earlier releases: ``python -m vlmrm.data.validate`` and
``python -m vlmrm.data.precache`` run :mod:`vlmrm.cli.validate` and :mod:`vlmrm.reward.precache`."""
