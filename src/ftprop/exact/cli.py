"""``ftprop solve``: placeholder, filled in by the exact-algorithm work."""


def add_solve_parser(sub) -> None:
    """Register the ``solve`` subcommand on the ``ftprop`` argument parser."""
