"""Step 2: table + NWP forecast -> downscaled wind (NWP reading, Delaunay weights, lookup)."""
