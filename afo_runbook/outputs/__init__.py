"""Where a run's results go besides the terminal, the JSON verdict and the HTML record.

Each output imports its library only when it is asked for: a plain `pytest -m observe` loads
none of them.
"""
