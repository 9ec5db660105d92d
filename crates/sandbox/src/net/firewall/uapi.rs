//! The numbers of the nf_tables netlink interface, named as in the kernel's uapi headers
//! (linux/netfilter/nfnetlink.h, linux/netfilter/nf_tables.h, linux/netfilter.h). Only
//! what the firewall sends or reads back is here.

// nfnetlink: message types are `subsystem << 8 | message`, the payload starts with an
// nfgenmsg {family u8, version u8, res_id be16}; batches are framed by BEGIN and END.
pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(super) const NFNETLINK_V0: u8 = 0;
pub(super) const NFNL_MSG_BATCH_BEGIN: u16 = 16;
pub(super) const NFNL_MSG_BATCH_END: u16 = 17;
pub(super) const NFGENMSG_LEN: usize = 4;

// enum nf_tables_msg_types. A dump of GET<x> answers with NEW<x> messages.
pub(super) const NFT_MSG_NEWTABLE: u8 = 0;
pub(super) const NFT_MSG_GETTABLE: u8 = 1;
pub(super) const NFT_MSG_DELTABLE: u8 = 2;
pub(super) const NFT_MSG_NEWCHAIN: u8 = 3;
pub(super) const NFT_MSG_NEWRULE: u8 = 6;
pub(super) const NFT_MSG_GETRULE: u8 = 7;
pub(super) const NFT_MSG_DELRULE: u8 = 8;
pub(super) const NFT_MSG_NEWSET: u8 = 9;
pub(super) const NFT_MSG_GETSET: u8 = 10;
pub(super) const NFT_MSG_DELSET: u8 = 11;
pub(super) const NFT_MSG_NEWSETELEM: u8 = 12;
pub(super) const NFT_MSG_DELSETELEM: u8 = 14;
/// Deletes an element if it is there (Linux 6.3).
pub(super) const NFT_MSG_DESTROYSETELEM: u8 = 30;

pub(super) const NFTA_LIST_ELEM: u16 = 1;

pub(super) const NFTA_TABLE_NAME: u16 = 1;

pub(super) const NFTA_CHAIN_TABLE: u16 = 1;
pub(super) const NFTA_CHAIN_NAME: u16 = 3;
pub(super) const NFTA_CHAIN_HOOK: u16 = 4;
pub(super) const NFTA_CHAIN_POLICY: u16 = 5;
pub(super) const NFTA_CHAIN_TYPE: u16 = 7;
pub(super) const NFTA_HOOK_HOOKNUM: u16 = 1;
pub(super) const NFTA_HOOK_PRIORITY: u16 = 2;

// enum nf_inet_hooks, and the verdicts a base chain's policy may be.
pub(super) const NF_INET_LOCAL_IN: u32 = 1;
pub(super) const NF_INET_FORWARD: u32 = 2;
pub(super) const NF_INET_POST_ROUTING: u32 = 4;
pub(super) const NF_DROP: i32 = 0;
pub(super) const NF_ACCEPT: i32 = 1;

pub(super) const NFTA_RULE_TABLE: u16 = 1;
pub(super) const NFTA_RULE_CHAIN: u16 = 2;
pub(super) const NFTA_RULE_HANDLE: u16 = 3;
pub(super) const NFTA_RULE_EXPRESSIONS: u16 = 4;

pub(super) const NFTA_SET_TABLE: u16 = 1;
pub(super) const NFTA_SET_NAME: u16 = 2;
pub(super) const NFTA_SET_FLAGS: u16 = 3;
pub(super) const NFTA_SET_KEY_TYPE: u16 = 4;
pub(super) const NFTA_SET_KEY_LEN: u16 = 5;
pub(super) const NFTA_SET_DATA_TYPE: u16 = 6;
pub(super) const NFTA_SET_DATA_LEN: u16 = 7;
pub(super) const NFTA_SET_DESC: u16 = 9;
pub(super) const NFTA_SET_ID: u16 = 10;
pub(super) const NFTA_SET_USERDATA: u16 = 13;
pub(super) const NFTA_SET_DESC_SIZE: u16 = 1;
// enum nft_set_flags: a map; a set the rules add to (`flags dynamic`).
pub(super) const NFT_SET_MAP: u32 = 0x8;
pub(super) const NFT_SET_EVAL: u32 = 0x20;

pub(super) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(super) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub(super) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub(super) const NFTA_SET_ELEM_KEY: u16 = 1;
pub(super) const NFTA_SET_ELEM_DATA: u16 = 2;

pub(super) const NFTA_DATA_VALUE: u16 = 1;
pub(super) const NFTA_DATA_VERDICT: u16 = 2;
pub(super) const NFTA_VERDICT_CODE: u16 = 1;
pub(super) const NFTA_VERDICT_CHAIN: u16 = 2;

// enum nft_verdicts (besides NF_ACCEPT and NF_DROP).
pub(super) const NFT_JUMP: i32 = -3;
pub(super) const NFT_GOTO: i32 = -4;
pub(super) const NFT_RETURN: i32 = -5;

// Registers: the verdict register, and the first 16-byte data register.
pub(super) const NFT_REG_VERDICT: u32 = 0;
pub(super) const NFT_REG_1: u32 = 1;

pub(super) const NFTA_EXPR_NAME: u16 = 1;
pub(super) const NFTA_EXPR_DATA: u16 = 2;

pub(super) const NFTA_IMMEDIATE_DREG: u16 = 1;
pub(super) const NFTA_IMMEDIATE_DATA: u16 = 2;

pub(super) const NFTA_META_DREG: u16 = 1;
pub(super) const NFTA_META_KEY: u16 = 2;
pub(super) const NFT_META_IIFNAME: u32 = 6;
pub(super) const NFT_META_OIFNAME: u32 = 7;
pub(super) const NFT_META_NFPROTO: u32 = 15;
pub(super) const NFT_META_L4PROTO: u32 = 16;

pub(super) const NFTA_CMP_SREG: u16 = 1;
pub(super) const NFTA_CMP_OP: u16 = 2;
pub(super) const NFTA_CMP_DATA: u16 = 3;
pub(super) const NFT_CMP_EQ: u32 = 0;
pub(super) const NFT_CMP_NEQ: u32 = 1;
pub(super) const NFT_CMP_LTE: u32 = 3;
pub(super) const NFT_CMP_GTE: u32 = 5;

pub(super) const NFTA_BITWISE_SREG: u16 = 1;
pub(super) const NFTA_BITWISE_DREG: u16 = 2;
pub(super) const NFTA_BITWISE_LEN: u16 = 3;
pub(super) const NFTA_BITWISE_MASK: u16 = 4;
pub(super) const NFTA_BITWISE_XOR: u16 = 5;

pub(super) const NFTA_PAYLOAD_DREG: u16 = 1;
pub(super) const NFTA_PAYLOAD_BASE: u16 = 2;
pub(super) const NFTA_PAYLOAD_OFFSET: u16 = 3;
pub(super) const NFTA_PAYLOAD_LEN: u16 = 4;
pub(super) const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
pub(super) const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;

pub(super) const NFTA_CT_DREG: u16 = 1;
pub(super) const NFTA_CT_KEY: u16 = 2;
pub(super) const NFTA_CT_SREG: u16 = 4;
pub(super) const NFT_CT_STATE: u32 = 0;
pub(super) const NFT_CT_MARK: u32 = 3;
// NF_CT_STATE_INVALID_BIT and NF_CT_STATE_BIT(IP_CT_ESTABLISHED / IP_CT_RELATED), in the
// host-endian u32 the ct expression loads.
pub(super) const NF_CT_STATE_INVALID: u32 = 1 << 0;
pub(super) const NF_CT_STATE_ESTABLISHED: u32 = 1 << 1;
pub(super) const NF_CT_STATE_RELATED: u32 = 1 << 2;
pub(super) const NF_CT_STATE_NEW: u32 = 1 << 3;

pub(super) const NFTA_LOOKUP_SET: u16 = 1;
pub(super) const NFTA_LOOKUP_SREG: u16 = 2;
pub(super) const NFTA_LOOKUP_DREG: u16 = 3;

pub(super) const NFTA_DYNSET_SET_NAME: u16 = 1;
pub(super) const NFTA_DYNSET_OP: u16 = 3;
pub(super) const NFTA_DYNSET_SREG_KEY: u16 = 4;
pub(super) const NFTA_DYNSET_EXPR: u16 = 7;
pub(super) const NFT_DYNSET_OP_ADD: u32 = 0;

pub(super) const NFTA_CONNLIMIT_COUNT: u16 = 1;
pub(super) const NFTA_CONNLIMIT_FLAGS: u16 = 2;
pub(super) const NFT_CONNLIMIT_F_INV: u32 = 1 << 0;

pub(super) const NFTA_LIMIT_RATE: u16 = 1;
pub(super) const NFTA_LIMIT_UNIT: u16 = 2;
pub(super) const NFTA_LIMIT_BURST: u16 = 3;
pub(super) const NFTA_LIMIT_TYPE: u16 = 4;
pub(super) const NFTA_LIMIT_FLAGS: u16 = 5;
pub(super) const NFT_LIMIT_PKT_BYTES: u32 = 1;
pub(super) const NFT_LIMIT_F_INV: u32 = 1 << 0;

pub(super) const NFTA_COUNTER_PACKETS: u16 = 2;

pub(super) const NFTA_REJECT_TYPE: u16 = 1;
pub(super) const NFTA_REJECT_ICMP_CODE: u16 = 2;
pub(super) const NFT_REJECT_TCP_RST: u32 = 1;
pub(super) const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
pub(super) const NFT_REJECT_ICMPX_ADMIN_PROHIBITED: u8 = 3;

pub(super) const NFTA_FIB_DREG: u16 = 1;
pub(super) const NFTA_FIB_RESULT: u16 = 2;
pub(super) const NFTA_FIB_FLAGS: u16 = 3;
pub(super) const NFT_FIB_RESULT_OIF: u32 = 1;
pub(super) const NFTA_FIB_F_SADDR: u32 = 1 << 0;
pub(super) const NFTA_FIB_F_IIF: u32 = 1 << 3;
pub(super) const NFTA_FIB_F_PRESENT: u32 = 1 << 5;

// Not the kernel's: nft's notions, kept in the set so that `nft list` prints names. The
// `ifname` key type (datatype.h TYPE_IFNAME), and the set userdata TLV saying its keys
// are host-endian (NFTNL_UDATA_SET_KEYBYTEORDER = 0, BYTEORDER_HOST_ENDIAN = 1).
pub(super) const TYPE_IFNAME: u32 = 41;
/// nft's `mark` (datatype.h TYPE_MARK): a host-endian u32, as function ids are stored.
pub(super) const TYPE_MARK: u32 = 19;
pub(super) const UDATA_SET_KEY_HOST_ENDIAN: [u8; 6] = host_endian_udata(0);
/// NFTNL_UDATA_SET_DATABYTEORDER = 1: a map's values are host-endian.
pub(super) const UDATA_SET_DATA_HOST_ENDIAN: [u8; 6] = host_endian_udata(1);

const fn host_endian_udata(kind: u8) -> [u8; 6] {
    let order = 1u32.to_ne_bytes();
    [kind, 4, order[0], order[1], order[2], order[3]]
}
