"""A mixed, realistic load on fastgate with Locust: API reads and writes, pages,
downloads, a rate-limited route, misses and health checks.

Run headless against ``python -m bench.serve`` (routes described there):

    locust -f bench/locustfile.py --headless -u 200 -r 50 -t 60s --host http://127.0.0.1:8080

A 429 on /limited/ is the limit doing its job and counts as a success (under
its own name); any other status than the one a task expects is a failure.
"""

import random

from locust import FastHttpUser, between, task


class ApiClient(FastHttpUser):
    wait_time = between(0.005, 0.05)

    def _expect(self, method: str, path: str, ok: tuple[int, ...], name: str, **kwargs) -> None:
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as response:
            if response.status_code not in ok:
                response.failure(f"status {response.status_code}, expected one of {ok}")
            elif path.startswith("/api/") and "X-Request-ID" not in response.headers:
                response.failure("no X-Request-ID in the answer")
            else:
                response.success()

    @task(20)
    def read_item(self):
        self._expect("GET", f"/api/small?item={random.randrange(10_000)}", (200,), "/api/small?item=N",
                     headers={"Accept": "application/json"})

    @task(5)
    def create_order(self):
        order = {"item": random.randrange(10_000), "quantity": random.randint(1, 5)}
        self._expect("POST", "/api/orders", (201,), "/api/orders", json=order)

    @task(5)
    def page(self):
        self._expect("GET", "/static/16k", (200,), "/static/16k")

    @task(1)
    def download(self):
        self._expect("GET", "/static/1m", (200,), "/static/1m")

    @task(5)
    def limited(self):
        self._expect("GET", "/limited/small", (200, 429), "/limited/small")

    @task(2)
    def missing(self):
        self._expect("GET", "/api/no-such-thing", (404,), "/api/404")

    @task(1)
    def health(self):
        self._expect("GET", "/health", (200,), "/health")
