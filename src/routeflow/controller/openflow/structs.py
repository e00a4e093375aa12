"""The OpenFlow 1.3 structures the fast codec and the entry checks read and write, precompiled."""

from __future__ import annotations

import struct

from os_ken.ofproto import ofproto_v1_3 as ofp

VERSION = ofp.OFP_VERSION

HEADER = struct.Struct("!BBHI")
# header, flow-mod body up to flags and pad, then the match's type and length
FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2xHH")
GROUP_MOD = struct.Struct("!BBHIHBxI")
BUCKET = struct.Struct("!HHII4x")
ACTION_OUTPUT = struct.Struct("!HHIH6x")
ACTION_GROUP = struct.Struct("!HHI")
#: type and length: of an action, and of an instruction
ACTION_HDR = struct.Struct("!HH")
ACTION_PUSH = struct.Struct("!HHH2x")
INST_APPLY = struct.Struct("!HH4x")
INST_GOTO = struct.Struct("!HHB3x")
OXM_HDR = struct.Struct("!I")
U8, U16, U32 = struct.Struct("!B"), struct.Struct("!H"), struct.Struct("!I")
MP_REPLY = struct.Struct("!HH4x")  # after the header: type, flags
# length, table_id, (durations), priority, (timeouts, flags, cookie, counters), match type and length
FLOW_STATS = struct.Struct("!HBx8xH34xHH")
FLOW_STATS_SIZE = ofp.OFP_FLOW_STATS_0_SIZE  # 48, then the match
MATCH_HDR = struct.Struct("!HH")
GROUP_DESC = struct.Struct("!HBxI")
HELLO_ELEM = struct.Struct("!HH")
#: Padding of each length below 8.
PADS = tuple(bytes(n) for n in range(8))
