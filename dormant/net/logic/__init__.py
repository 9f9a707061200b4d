"""The network as logic: exact simulation, interval bounds, the gate alphabet, decompilation to a
netlist and its exports, and the search for every input that makes a small circuit fire."""
