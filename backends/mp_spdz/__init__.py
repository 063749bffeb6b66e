"""The MP-SPDZ backend: the criteria IR compiled to MP-SPDZ programs and run on its VMs.

* `protocols`: what each MP-SPDZ protocol (virtual machine) is and needs.
* `program`: the IR translated to readable `.mpc` source; party 0's input file; output parsing.
* `compile`: MP-SPDZ's compiler run on that source, cached outside the MP-SPDZ tree.
* `launch`: a run's directories, certificates, address files and party commands; report parsing.

MP-SPDZ itself is found through the MP_SPDZ_HOME environment variable (default /opt/mp-spdz)
and is never written to.
"""
