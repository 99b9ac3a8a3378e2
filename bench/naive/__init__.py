"""BASELINE, NOT HOOKFAN. The fan-out a user would write in an afternoon, kept only so the bench
can measure hookfan against it in the same run: one ``apply_async`` per backend with the body
inside the message, ``requests.post`` per attempt, ``self.retry(countdown=...)`` for backoff.
It has every flaw DESIGN.md lists (ETA tasks held in worker memory, duplicates past the
visibility timeout, body stored once per backend, 202 before anything is durable on a worker
crash). Never import it from hookfan.
"""
