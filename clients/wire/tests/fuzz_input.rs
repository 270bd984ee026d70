//! Hostile input never panics: arbitrary bytes through the frame decoder, the
//! request decoder and the batch checks, and arbitrary MessagePack values as
//! requests. (Property tests; the broker's connection runs exactly these.)

use bytes::BytesMut;
use herald_wire::batch;
use herald_wire::protocol::codec::FrameCodec;
use herald_wire::protocol::Request;
use proptest::prelude::*;
use tokio_util::codec::Decoder;

fn msgpack_value() -> impl Strategy<Value = rmpv::Value> {
    let leaf = prop_oneof![
        Just(rmpv::Value::Nil),
        any::<bool>().prop_map(rmpv::Value::from),
        any::<i64>().prop_map(rmpv::Value::from),
        any::<u64>().prop_map(rmpv::Value::from),
        any::<f64>().prop_map(rmpv::Value::from),
        "[a-z_]{0,16}".prop_map(rmpv::Value::from),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(rmpv::Value::Binary),
        prop_oneof![
            Just("produce"),
            Just("fetch"),
            Just("handshake"),
            Just("join_group"),
            Just("heartbeat"),
            Just("commit_offsets"),
            Just("reset_offsets")
        ]
        .prop_map(rmpv::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(rmpv::Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("correlation_id"),
                        Just("op"),
                        Just("topic"),
                        Just("records"),
                        Just("partition"),
                        Just("offsets"),
                        Just("group_id")
                    ]
                    .prop_map(rmpv::Value::from),
                    inner
                ),
                0..8
            )
            .prop_map(rmpv::Value::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&bytes[..]);
        // The reader stops at the first Kafka request or error, as here.
        while let Ok(Some(herald_wire::protocol::codec::Inbound::Frame(frame))) = codec.decode(&mut buf) {
            let _ = Request::decode(&frame);
        }
        let _ = Request::decode(&bytes);
        let _ = batch::validate(&bytes);
        let _ = batch::decode_all(&bytes);
    }

    #[test]
    fn arbitrary_msgpack_requests_decode_or_fail_cleanly(value in msgpack_value()) {
        let mut frame = Vec::new();
        rmpv::encode::write_value(&mut frame, &value).unwrap();
        if let Err(err) = Request::decode(&frame) {
            prop_assert!(!err.error.message.is_empty());
        }
    }
}
