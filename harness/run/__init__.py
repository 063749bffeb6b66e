"""Running a grid: configs, the sweep, one run of a cell, party processes, run metadata."""
