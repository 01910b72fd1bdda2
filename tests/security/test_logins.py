"""Issue 10, item 4: logins do not stall everyone, and guesses are counted, concurrent ones too.

A real control plane on loopback; clients are httpx, some from another loopback address
(127.0.0.2) to be another client. The limiter's arithmetic is also checked alone, with a
clock of the test's own.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from podsweep.errors import TooManyRequests, UsageError
from podsweep.server.limits import FORGET_AT, LoginLimiter

from ..control.conftest import ControlPlane

# seconds: the login window of the control plane whose window passes during a test; long
# enough that a loaded machine answers a burst of guesses well within it (the 40 guesses
# and the right password took 0.3-0.5 s at a load of 8 on 2 CPUs), and the test waits it out
WINDOW = 5.0


class Plane(ControlPlane):
    password: str
    url: str
    token: str


def start(tmp_path: Path, **env: str) -> Plane:
    cp = Plane(tmp_path / "home")
    cp.env.update(env)
    out = cp.run("up", "--gpus", "1").stdout
    found = re.search(r"with the password (\S+)", out)
    assert found, out
    cp.password = found.group(1)
    cp.url = json.loads((cp.home / "server.json").read_text())["url"]
    cp.token = json.loads((cp.home / "credentials.json").read_text())["token"]
    return cp


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    cp = start(tmp_path)          # the default limits: 5 per name, 20 per address, 60 s
    yield cp
    cp.stop()


def client(url: str, address: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=120, follow_redirects=False,
                             transport=httpx.AsyncHTTPTransport(local_address=address),
                             limits=httpx.Limits(max_connections=100))


async def login(http: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await http.post("/login", data={"username": name, "password": password,
                                           "next": "/jobs"})


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 429, response.status_code
    assert int(response.headers["retry-after"]) >= 1
    assert re.search(r"too many login", response.text), response.text


def test_concurrent_guesses_at_one_name_are_counted_before_they_are_answered(tmp_path: Path):
    plane = start(tmp_path, PODSWEEP_LOGIN_WINDOW=str(WINDOW))

    async def scenario() -> None:
        async with client(plane.url) as http:
            guesses = await asyncio.gather(*(login(http, "admin", f"guess-{i}")
                                             for i in range(40)))
            statuses = Counter(r.status_code for r in guesses)
            # exactly the name's budget was hashed; every other guess was refused unheard
            assert statuses == {401: 5, 429: 35}, statuses
            for response in guesses:
                if response.status_code == 429:
                    assert_refused(response)
            # the right password too: the name's budget is spent for the window
            assert_refused(await login(http, "admin", plane.password))
            await asyncio.sleep(WINDOW + 0.5)
            good = await login(http, "admin", plane.password)
            assert good.status_code == 303, good.text
            assert "podsweep_session" in good.cookies

    try:
        asyncio.run(scenario())
    finally:
        plane.stop()


def test_a_login_does_not_refill_another_clients_budget(plane: Plane):
    async def scenario() -> None:
        async with client(plane.url, "127.0.0.2") as attacker, client(plane.url) as admin:
            for i in range(4):
                assert (await login(attacker, "admin", f"guess-{i}")).status_code == 401
            assert (await login(admin, "admin", plane.password)).status_code == 303
            # the admin's success cleared nothing: one guess left for the name, then 429
            assert (await login(attacker, "admin", "guess-4")).status_code == 401
            assert_refused(await login(attacker, "admin", "guess-5"))
        # an address's own budget: 20 failures from 127.0.0.3, whatever the names, ...
        async with client(plane.url, "127.0.0.3") as sprayer, client(plane.url) as other:
            answers = []
            for _ in range(3):      # 10 at a time: below the 16 in flight on the whole plane
                answers += await asyncio.gather(*(login(sprayer, secrets.token_hex(4), "x")
                                                  for _ in range(10)))
            assert Counter(r.status_code for r in answers) == {401: 20, 429: 10}
            assert_refused(await login(sprayer, "someone", "x"))
            # ... while another address still gets its guesses heard
            assert (await login(other, secrets.token_hex(4), "x")).status_code == 401

    asyncio.run(scenario())


def test_authenticated_requests_answer_while_logins_flood(tmp_path: Path):
    # limits raised so that every login of the flood is hashed: the API must keep answering
    # because the hashing is off the event loop, not because the flood was refused
    cp = start(tmp_path, PODSWEEP_LOGIN_PER_NAME="1000000", PODSWEEP_LOGIN_PER_CLIENT="1000000",
               PODSWEEP_LOGIN_IN_FLIGHT="1000000")
    try:
        async def scenario() -> None:
            stop = asyncio.Event()
            hashed = Counter[int]()

            async def flood(http: httpx.AsyncClient) -> None:
                while not stop.is_set():
                    response = await login(http, secrets.token_hex(6), "wrong")
                    hashed[response.status_code] += 1

            async with client(cp.url) as flooders, client(cp.url) as api:
                api.headers["Authorization"] = f"Bearer {cp.token}"
                tasks = [asyncio.create_task(flood(flooders)) for _ in range(8)]
                await asyncio.sleep(0.5)          # the flood under way
                answers = []
                for _ in range(40):
                    answers.append(await api.get("/api/v1/whoami"))
                stop.set()
                await asyncio.gather(*tasks)
            assert [r.status_code for r in answers] == [200] * 40
            assert all(r.json()["name"] == "admin" for r in answers)
            assert hashed[401] >= 8 and set(hashed) == {401}, hashed

        asyncio.run(scenario())
    finally:
        cp.stop()


# ------------------------------------------------------------------ the limiter alone

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_slides_and_successes_give_back_their_own_slot_only():
    clock = Clock()
    limiter = LoginLimiter(per_name=3, per_client=100, in_flight=100, window=60, clock=clock)
    for _ in range(2):
        with limiter.reserve("ann", "a"):
            pass                                    # failed: no succeeded()
        clock.now += 10
    with limiter.reserve("ann", "b") as ok:
        ok.succeeded()                              # gives back its slot, clears nothing
    with limiter.reserve("ann", "a"):
        pass
    with pytest.raises(TooManyRequests) as refused:
        limiter.reserve("ann", "c")
    assert refused.value.retry_after == 40          # the first failure leaves at 1060
    clock.now = 1060.0
    limiter.reserve("ann", "c")                     # it left: one slot again


def test_attempts_in_flight_count_and_an_exception_counts_as_a_failure():
    clock = Clock()
    limiter = LoginLimiter(per_name=2, per_client=2, in_flight=4, window=60, clock=clock)
    first, second = limiter.reserve("bo", "a"), limiter.reserve("bo", "b")
    with pytest.raises(TooManyRequests, match="user 'bo'") as refused:
        limiter.reserve("bo", "c")
    assert refused.value.retry_after == 1           # only attempts in flight fill it
    limiter.reserve("cy", "a")
    with pytest.raises(TooManyRequests, match="this address"):
        limiter.reserve("di", "a")                  # two of client a's are in flight
    limiter.reserve("di", "d")
    with pytest.raises(TooManyRequests, match="in progress"):
        limiter.reserve("ed", "e")                  # 4 in flight on the whole plane
    with pytest.raises(RuntimeError), first:
        raise RuntimeError("the request was cancelled")
    with second:
        second.succeeded()
    assert limiter.in_flight == 2
    limiter.reserve("bo", "f")                      # bo: its one failure + this one
    with pytest.raises(TooManyRequests, match="user 'bo'"):
        limiter.reserve("bo", "g")


def test_limits_come_from_the_environment_and_bad_ones_are_refused():
    limiter = LoginLimiter.from_env({"PODSWEEP_LOGIN_WINDOW": "2.5",
                                     "PODSWEEP_LOGIN_PER_NAME": "7"})
    assert (limiter.window, limiter.per_name, limiter.per_client) == (2.5, 7, 20)
    for bad in ("nan", "-1", "soon", "inf"):
        with pytest.raises(UsageError, match="PODSWEEP_LOGIN_WINDOW"):
            LoginLimiter.from_env({"PODSWEEP_LOGIN_WINDOW": bad})


def test_idle_budgets_are_forgotten():
    clock = Clock()
    limiter = LoginLimiter(per_client=10**6, window=1, clock=clock)
    for i in range(3 * FORGET_AT):
        clock.now += 0.001
        with limiter.reserve(f"n{i}", "c"):
            pass
        assert len(limiter._names) <= FORGET_AT
