"""The Textual monitor (``sparsecap monitor``, ``train --tui``): ``app`` (MonitorApp), ``screens``, ``widgets`` (one
per pane), ``plot`` (braille charts), ``images`` (half-block pictures), ``text`` (the ``--once`` snapshot), ``attach``
(run a job with the monitor attached), ``sweep`` and ``sweep_text`` (a sweep folder: screens and its ``--once``
text). Styles live in ``monitor.tcss``; the data comes from ``sparsecap_engine.monitor_state`` and
``sparsecap_engine.sweep_state``."""
