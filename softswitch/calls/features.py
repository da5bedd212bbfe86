"""Feature codes dialled from phones: agents log in, log out, pause and get ready; supervisors
listen to, whisper to or barge into an agent's call (`*31` + the agent's extension).

Each is a short call the switch answers itself: it does the action, says so in Japanese, and
hangs up; a supervisor's call stays up, mixed into the agent's call, until either side hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from softswitch.calls.session import CallSession, PlacedCall, SessionServices
from softswitch.config import FeatureCodes

if TYPE_CHECKING:
    from softswitch.calls.b2bua import Call, Target
    from softswitch.centre import ContactCentre

log = logging.getLogger(__name__)

AGENT_ACTIONS = {"agent_login": "login", "agent_logout": "logout", "agent_pause": "pause",
                 "agent_ready": "ready"}
SUPERVISOR_MODES = {"listen": "listen", "whisper": "whisper", "barge": "barge"}
SAID = {
    "login": "ログインしました。", "logout": "ログアウトしました。", "pause": "離席中にしました。",
    "ready": "受付可能にしました。", "not-an-agent": "この内線はエージェントとして登録されていません。",
    "not-logged-in": "先にログインしてください。", "no-call": "そのエージェントは通話中ではありません。",
    "nothing-parked": "その番号に保留中の通話はありません。",
    "nothing-ringing": "その内線に着信中の通話はありません。",
    "park-by-transfer": "通話を転送して、駐車番号を指定してください。",
}


def match_feature(codes: FeatureCodes, dialled: str) -> tuple[str, str] | None:
    """(feature, argument) when the dialled number starts with a feature code."""
    for feature, code in codes.model_dump().items():
        if dialled.startswith(code):
            return feature, dialled[len(code):]
    return None


class FeatureCall(CallSession):
    """One feature-code call."""

    def __init__(self, services: SessionServices, call: Call, centre: ContactCentre, feature: str,
                 argument: str) -> None:
        super().__init__(services, call, None)
        self.centre = centre
        self.feature = feature
        self.argument = argument

    async def run(self) -> None:
        try:
            await self.answer()
            user = self.call.caller
            if self.feature == "retrieve":
                await self._retrieve(self.argument)
            elif self.feature == "pickup":
                await self._pickup(self.argument)
            elif self.feature == "park":
                await self.say(SAID["park-by-transfer"])
            elif self.feature in AGENT_ACTIONS:
                action = AGENT_ACTIONS[self.feature]
                problem = self.centre.agent_action(user, action, reason="phone")
                log.info("feature %s by %s: %s", self.feature, user, problem or "done")
                await self.say(SAID[problem or action])
            else:
                await self._supervise(SUPERVISOR_MODES[self.feature], self.argument)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("feature call %s failed", self.call.uuid)
        finally:
            if not self.ended.is_set():
                self._hangup("normal_clearing")
            await self._cleanup()

    async def say(self, text: str) -> None:
        path = await self.s.tts.render(text, lang="ja")
        await self._play(path, False)

    async def _pickup(self, extension: str) -> None:
        """Answer a call ringing at another extension; this call then lasts as long as that one."""
        ringing = self.s.ringing.get(extension)
        if ringing is None or not ringing.pickup(self):
            await self.say(SAID["nothing-ringing"])
            return
        log.info("%s picks up the call ringing at %s", self.call.caller, extension)
        await self.ended.wait()

    async def _retrieve(self, slot: str) -> None:
        """Take the call parked in a slot: the two callers talk until one of them hangs up."""
        parked = self.s.parked.pop(slot, None)
        if parked is None or parked.ended.is_set():
            await self.say(SAID["nothing-parked"])
            return
        log.info("%s retrieves the call parked in slot %s", self.call.caller, slot)
        await self.s.media.stop(parked.a_leg)
        await self.s.media.bridge(parked.a_leg, self.a_leg)
        waits = [asyncio.ensure_future(self.ended.wait()), asyncio.ensure_future(parked.ended.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if not parked.ended.is_set():
            parked._hangup("normal_clearing")

    async def _supervise(self, mode: str, agent: str) -> None:
        target = self.centre.session_of_agent(agent)
        if target is None or target.b_leg is None:
            await self.say(SAID["no-call"])
            return
        log.info("%s: %s on agent %s's call %s", self.call.caller, mode, agent, target.call.uuid)
        await mix_in(self, mode, target)


async def mix_in(supervisor: CallSession, mode: str, target: CallSession) -> None:
    """Mix a supervisor's leg into a connected call until either of them ends."""
    assert target.b_leg is not None
    media = supervisor.s.media
    await media.supervise(mode, supervisor.a_leg, target.b_leg, target.a_leg)
    try:
        waits = [asyncio.ensure_future(supervisor.ended.wait()), asyncio.ensure_future(target.ended.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
    finally:
        with contextlib.suppress(Exception):
            await media.unsupervise(supervisor.a_leg)


async def supervise_by_phone(services: SessionServices, mode: str, supervisor: str, targets: list[Target],
                             target: CallSession) -> None:
    """The API's supervision: ring the supervisor's phone, then mix it into the agent's call."""
    call, status = await PlacedCall.ring(services, target.call.caller, supervisor, targets, 30.0)
    if call is None:
        log.info("supervisor %s did not answer (%s)", supervisor, status)
        return
    try:
        await mix_in(call, SUPERVISOR_MODES[mode], target)
    finally:
        if not call.ended.is_set():
            call._hangup("normal_clearing")
        await call._cleanup()
