"""Our port of Abaco's own test scenarios (TACC/abaco ``tests/test_abaco_core.py``).

One module per area; each module is a sequence, as Abaco's suite is (later tests use the
actors earlier ones registered), in tenants of its own on one platform shared by the
package. The README's "Abaco's test scenarios" maps every Abaco test to its port.
"""
