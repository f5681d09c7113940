"""What the tests share, importable as ``support`` (pytest.ini puts test/ on the path).

``corpus`` the sentences tiny tokenizers are trained on; ``tokenizers`` trains them; ``tiny_models``
the tiny configs and the tiny random model; ``engine`` scripted answers and random images for
engine tests; ``scripted_model`` a tiny model folder whose greedy answer is known (node tests);
``dds`` the client side of the node tests over real DDS (a client node in its own context, the
node in a subprocess through the runner); ``interface_peer`` the other side of the interface tests.
Named ``support``, not ``test``: a top-level ``test`` package would shadow Python's own.
"""
