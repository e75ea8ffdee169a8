"""Serving an exported artifact, and choosing how to serve it.

    protocol   what a request and a response are; the checks a request passes (one-line 4xx)
    app        the server process: mosec's HTTP front end, an admitting stage, a batched
               inference stage (several processes)
    server     start it, wait until a real request answers, stop it with its whole group
    loadgen    a bounded load generator: closed-loop concurrency and Poisson arrivals, loopback only
    sweep      the top candidates x batching x processes x threads x runtime knobs, each driven
               to saturation; the most throughput within a p99 target wins

Nothing here is imported by `import hone`; mosec, msgpack and aiohttp are the `serve` extra.
"""
