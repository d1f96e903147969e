"""What /status and /metrics both report, read once from the shared store: below both, importing neither.

* :mod:`.snapshot`: one read of the store, every job judged at one ``now``,
  and the scheduler component judged from it;
* :mod:`.scheduler_view`: the scheduler as a report shows it (typed);
* :mod:`.uptime`: the service's uptime, from the master's clocks.
"""
