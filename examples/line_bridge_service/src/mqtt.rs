//! A minimal MQTT 3.1.1 publisher over a blocking stream: CONNECT/CONNACK, PUBLISH (QoS 0, or
//! QoS 1 waiting for its PUBACK), PINGREQ/PINGRESP and DISCONNECT. The packets are encoded and
//! framed by `mqttbytes`; this module only sequences them.

use std::io::{self, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqttbytes::QoS;
use mqttbytes::v4::{
    self, ConnAck, Connect, ConnectReturnCode, Disconnect, Packet, PingReq, Publish,
};

use crate::lines::timed_out;

/// Largest packet accepted from the broker, bytes (a publisher only gets small acks).
const MAX_INCOMING: usize = 64 * 1024;

/// A connected session: CONNACK received and accepted.
pub struct Session<S> {
    stream: S,
    /// Bytes received and not yet framed into a packet.
    rx: BytesMut,
    /// The packet being sent.
    tx: BytesMut,
    keep_alive: Duration,
    /// When a packet was last sent: a PINGREQ is due after half the keep-alive of silence.
    last_sent: Instant,
    next_pkid: u16,
}

/// Turns an encoding or framing error of `mqttbytes` into an I/O error.
fn protocol(e: mqttbytes::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, format!("MQTT protocol: {e:?}"))
}

fn refused(code: ConnectReturnCode) -> io::Error {
    let why = match code {
        ConnectReturnCode::Success => "accepted",
        ConnectReturnCode::RefusedProtocolVersion => "unacceptable protocol version",
        ConnectReturnCode::BadClientId => "client id rejected",
        ConnectReturnCode::ServiceUnavailable => "server unavailable",
        ConnectReturnCode::BadUserNamePassword => "bad user name or password",
        ConnectReturnCode::NotAuthorized => "not authorized",
    };
    io::Error::new(
        ErrorKind::ConnectionRefused,
        format!("the broker refused the connection: {why}"),
    )
}

impl<S: Read + Write> Session<S> {
    /// Sends CONNECT (clean session) and waits for an accepting CONNACK. `stream` should have
    /// a read time-out: a read that times out is a broker that does not answer.
    pub fn connect(stream: S, client_id: &str, keep_alive_s: u16) -> io::Result<Self> {
        let mut session = Session {
            stream,
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            keep_alive: Duration::from_secs(keep_alive_s.into()),
            last_sent: Instant::now(),
            next_pkid: 1,
        };
        let mut connect = Connect::new(client_id);
        connect.keep_alive = keep_alive_s;
        connect.clean_session = true;
        connect.write(&mut session.tx).map_err(protocol)?;
        session.send()?;
        match session.read_packet()? {
            Packet::ConnAck(ConnAck {
                code: ConnectReturnCode::Success,
                ..
            }) => Ok(session),
            Packet::ConnAck(ConnAck { code, .. }) => Err(refused(code)),
            other => Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("expected CONNACK, the broker sent {other:?}"),
            )),
        }
    }

    /// Publishes one message; with QoS 1, returns once the broker acknowledged it.
    pub fn publish(&mut self, topic: &str, qos: QoS, payload: &[u8]) -> io::Result<()> {
        let mut publish = Publish::new(topic, qos, payload);
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            self.take_pkid()
        };
        publish.pkid = pkid;
        publish.write(&mut self.tx).map_err(protocol)?;
        self.send()?;
        if qos != QoS::AtMostOnce {
            self.wait_for(
                "PUBACK",
                |p| matches!(p, Packet::PubAck(a) if a.pkid == pkid),
            )?;
        }
        Ok(())
    }

    /// Sends a PINGREQ and waits for its PINGRESP when nothing was sent for half the
    /// keep-alive: the broker then knows the client is alive, and the client that the
    /// connection still works (an idle TCP connection shows no failure by itself).
    pub fn keep_alive(&mut self) -> io::Result<()> {
        if self.keep_alive.is_zero() || self.last_sent.elapsed() < self.keep_alive / 2 {
            return Ok(());
        }
        PingReq.write(&mut self.tx).map_err(protocol)?;
        self.send()?;
        self.wait_for("PINGRESP", |p| matches!(p, Packet::PingResp))
    }

    /// Says goodbye (DISCONNECT), so the broker does not treat the end as a lost client.
    pub fn disconnect(&mut self) -> io::Result<()> {
        Disconnect.write(&mut self.tx).map_err(protocol)?;
        self.send()
    }

    /// A packet id for QoS 1: 1 to 65535, round and round (0 is not a valid id).
    fn take_pkid(&mut self) -> u16 {
        let pkid = self.next_pkid;
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        pkid
    }

    fn send(&mut self) -> io::Result<()> {
        let result = self
            .stream
            .write_all(&self.tx)
            .and_then(|()| self.stream.flush());
        self.tx.clear();
        self.last_sent = Instant::now();
        result
    }

    /// Reads packets until one that `wanted` accepts; others (a late PINGRESP, say) are
    /// skipped.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Packet) -> bool) -> io::Result<()> {
        loop {
            let packet = self.read_packet().map_err(|e| {
                if timed_out(&e) {
                    io::Error::new(ErrorKind::TimedOut, format!("no {what} from the broker"))
                } else {
                    e
                }
            })?;
            if wanted(&packet) {
                return Ok(());
            }
        }
    }

    /// The next whole packet from the broker.
    fn read_packet(&mut self) -> io::Result<Packet> {
        let mut chunk = [0u8; 1024];
        loop {
            match v4::read(&mut self.rx, MAX_INCOMING) {
                Ok(packet) => return Ok(packet),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(protocol(e)),
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the broker closed the connection",
                    ));
                }
                Ok(n) => self.rx.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A scripted broker: what it answers, and what the client wrote to it.
    struct Broker {
        answers: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Broker {
        fn new(answers: &[u8]) -> Self {
            Broker {
                answers: Cursor::new(answers.to_vec()),
                written: Vec::new(),
            }
        }
    }

    impl Read for Broker {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // One byte at a time: framing must cope with packets split across reads.
            let n = buf.len().min(1);
            self.answers.read(&mut buf[..n])
        }
    }

    impl Write for Broker {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const CONNACK_OK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];
    const PINGRESP: [u8; 2] = [0xD0, 0x00];

    /// The packets the client wrote, decoded.
    fn sent(session: Session<Broker>) -> Vec<Packet> {
        let mut bytes = BytesMut::from(&session.stream.written[..]);
        let mut packets = Vec::new();
        while !bytes.is_empty() {
            packets.push(v4::read(&mut bytes, MAX_INCOMING).expect("a whole packet"));
        }
        packets
    }

    #[test]
    fn connects_with_a_clean_session() {
        let session = Session::connect(Broker::new(&CONNACK_OK), "bridge.0", 30).expect("ok");
        match &sent(session)[..] {
            [Packet::Connect(c)] => {
                assert_eq!(c.client_id, "bridge.0");
                assert_eq!(c.keep_alive, 30);
                assert!(c.clean_session);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_refused_connection_says_why() {
        let Err(e) = Session::connect(Broker::new(&[0x20, 0x02, 0x00, 0x05]), "x", 30) else {
            panic!("accepted");
        };
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        assert!(e.to_string().contains("not authorized"), "{e}");
    }

    #[test]
    fn a_silent_broker_is_an_error() {
        let Err(e) = Session::connect(Broker::new(&[0x20, 0x02]), "x", 30) else {
            panic!("accepted");
        };
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn qos1_publish_waits_for_its_puback() {
        // CONNACK, then a stray PINGRESP, a PUBACK for another id, and the right PUBACK.
        let mut answers = CONNACK_OK.to_vec();
        answers.extend_from_slice(&PINGRESP);
        answers.extend_from_slice(&[0x40, 0x02, 0x00, 0x07, 0x40, 0x02, 0x00, 0x01]);
        let mut session = Session::connect(Broker::new(&answers), "x", 30).expect("ok");
        session
            .publish("lines/a", QoS::AtLeastOnce, b"hello")
            .expect("acknowledged");
        // No second PUBACK: the next publish fails.
        let e = session
            .publish("lines/a", QoS::AtLeastOnce, b"again")
            .expect_err("no PUBACK");
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        match &sent(session)[..] {
            [Packet::Connect(_), Packet::Publish(p1), Packet::Publish(p2)] => {
                assert_eq!(
                    (p1.topic.as_str(), &p1.payload[..]),
                    ("lines/a", &b"hello"[..])
                );
                assert_eq!((p1.qos, p1.pkid), (QoS::AtLeastOnce, 1));
                assert_eq!(p2.pkid, 2);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn qos0_publish_waits_for_nothing() {
        let mut session = Session::connect(Broker::new(&CONNACK_OK), "x", 30).expect("ok");
        for line in [&b"a"[..], b"", b"c"] {
            session.publish("t", QoS::AtMostOnce, line).expect("sent");
        }
        session.disconnect().expect("sent");
        let packets = sent(session);
        let payloads: Vec<&[u8]> = packets
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => {
                    assert_eq!((p.qos, p.pkid), (QoS::AtMostOnce, 0));
                    Some(&p.payload[..])
                }
                _ => None,
            })
            .collect();
        assert_eq!(payloads, [&b"a"[..], b"", b"c"]);
        assert!(matches!(packets.last(), Some(Packet::Disconnect)));
    }

    #[test]
    fn pings_only_after_half_the_keep_alive() {
        let mut answers = CONNACK_OK.to_vec();
        answers.extend_from_slice(&PINGRESP);
        let mut session = Session::connect(Broker::new(&answers), "x", 10).expect("ok");
        session.keep_alive().expect("not due");
        session.last_sent -= Duration::from_secs(6);
        session.keep_alive().expect("PINGRESP");
        session.last_sent -= Duration::from_secs(6);
        let e = session.keep_alive().expect_err("no second PINGRESP");
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        let packets = sent(session);
        assert_eq!(packets.len(), 3);
        assert!(matches!(packets[1..], [Packet::PingReq, Packet::PingReq]));
    }

    #[test]
    fn packet_ids_skip_zero() {
        let mut session = Session::connect(Broker::new(&CONNACK_OK), "x", 30).expect("ok");
        session.next_pkid = u16::MAX;
        assert_eq!(session.take_pkid(), u16::MAX);
        assert_eq!(session.take_pkid(), 1);
    }
}
