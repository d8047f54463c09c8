"""Step 1: DEM -> correction table (engine-neutral loop, the table format, DEM reading)."""
