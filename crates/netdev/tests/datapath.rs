//! The same behaviour from the fake and from the real host: "exists" and
//! "not found" are told apart, a veth goes with its namespace, an nftables
//! batch applies whole or not at all. The real host runs only with
//! `OXISTACK_NET_TESTS=1` (root, iproute2, nftables).

use std::process::Command;

use oxistack_netdev::nft::{self, Family, Hook, TableBuilder};
use oxistack_netdev::{Datapath, FakeDatapath, LinkChange, LinuxDatapath, NewLink, Route};

async fn behaves_like_a_host(dp: &dyn Datapath, sfx: &str) {
    let (br, ns) = (format!("oxtb{sfx}"), format!("oxtn-{sfx}"));
    let (veth, peer) = (format!("oxtv{sfx}"), "eth-x".to_string());

    dp.add_link(None, &NewLink::Bridge { name: br.clone() })
        .await
        .unwrap();
    let e = dp
        .add_link(None, &NewLink::Bridge { name: br.clone() })
        .await
        .unwrap_err();
    assert!(e.is_exists(), "{e:?}");
    let e = dp
        .set_link(
            None,
            "oxtnosuchdev",
            &LinkChange {
                up: Some(true),
                ..LinkChange::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");

    dp.add_namespace(&ns).await.unwrap();
    assert!(dp.namespaces().await.unwrap().contains(&ns));
    dp.add_link(
        None,
        &NewLink::Veth {
            name: veth.clone(),
            peer: peer.clone(),
            peer_ns: Some(ns.clone()),
        },
    )
    .await
    .unwrap();
    dp.set_link(
        None,
        &veth,
        &LinkChange {
            master: Some(br.clone()),
            mtu: Some(1400),
            up: Some(true),
            ..LinkChange::default()
        },
    )
    .await
    .unwrap();
    dp.set_link(
        Some(&ns),
        &peer,
        &LinkChange {
            mac: Some("FA:16:3E:00:00:09".into()),
            up: Some(true),
            ..LinkChange::default()
        },
    )
    .await
    .unwrap();
    let root = dp.links(None).await.unwrap();
    let v = root.iter().find(|l| l.name == veth).unwrap();
    assert_eq!(
        (v.kind.as_deref(), v.master.as_deref(), v.mtu, v.up),
        (Some("veth"), Some(br.as_str()), 1400, true)
    );
    let inner = dp.links(Some(&ns)).await.unwrap();
    assert_eq!(
        inner
            .iter()
            .find(|l| l.name == peer)
            .unwrap()
            .mac
            .as_deref(),
        Some("fa:16:3e:00:00:09")
    );

    dp.add_address(Some(&ns), &peer, "192.0.2.5/24")
        .await
        .unwrap();
    assert!(dp
        .add_address(Some(&ns), &peer, "192.0.2.5/24")
        .await
        .unwrap_err()
        .is_exists());
    assert_eq!(
        dp.addresses(Some(&ns), &peer).await.unwrap(),
        vec!["192.0.2.5/24".to_string()]
    );
    let route = Route::new("198.51.100.0/24", "192.0.2.1".parse().unwrap());
    dp.replace_route(Some(&ns), &route).await.unwrap();
    assert_eq!(dp.routes(Some(&ns)).await.unwrap(), vec![route.clone()]);
    dp.delete_route(Some(&ns), &route).await.unwrap();
    assert!(dp
        .delete_route(Some(&ns), &route)
        .await
        .unwrap_err()
        .is_not_found());
    dp.set_sysctl(Some(&ns), "net.ipv4.ip_forward", "1")
        .await
        .unwrap();
    assert_eq!(
        dp.sysctl(Some(&ns), "net.ipv4.ip_forward").await.unwrap(),
        "1"
    );

    // nftables: a table replaced atomically; a bad batch changes nothing.
    let mut t = TableBuilder::new(Family::IP, "oxistack-nat");
    t.base_chain("postrouting", nft::ChainType::NAT, Hook::Postrouting, 100);
    t.rule(
        "postrouting",
        vec![
            nft::eq(nft::meta(nft::Key::Oifname), nft::s("qg-x")),
            nft::snat("192.0.2.5"),
        ],
    );
    dp.nft_apply(Some(&ns), &t.replace_batch()).await.unwrap();
    assert_eq!(
        dp.nft_table(Some(&ns), "ip", "oxistack-nat").await.unwrap(),
        Some(t.summary())
    );
    let mut bad = t.clone();
    bad.rule("no-such-chain", vec![nft::accept()]);
    assert!(dp.nft_apply(Some(&ns), &bad.replace_batch()).await.is_err());
    assert_eq!(
        dp.nft_table(Some(&ns), "ip", "oxistack-nat").await.unwrap(),
        Some(t.summary())
    );
    dp.nft_apply(
        Some(&ns),
        &nft::delete_table_batch(Family::IP, "oxistack-nat"),
    )
    .await
    .unwrap();
    assert_eq!(
        dp.nft_table(Some(&ns), "ip", "oxistack-nat").await.unwrap(),
        None
    );

    // Deleting the namespace takes the veth's root end with it (the kernel
    // does so in the background: wait for it, boundedly).
    dp.delete_namespace(&ns).await.unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if !dp.links(None).await.unwrap().iter().any(|l| l.name == veth) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "{veth} outlived its peer's namespace");
    dp.delete_link(None, &br).await.unwrap();
    assert!(dp.delete_link(None, &br).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn the_fake_behaves_like_a_host() {
    behaves_like_a_host(&FakeDatapath::new(), "fake").await;
}

#[tokio::test]
async fn the_fake_fails_on_demand() {
    let fake = FakeDatapath::new();
    fake.fail_matching("add_link root oxbr-");
    assert!(fake
        .add_link(
            None,
            &NewLink::Bridge {
                name: "oxbr-1".into()
            }
        )
        .await
        .is_err());
    assert!(fake
        .add_link(
            None,
            &NewLink::Bridge {
                name: "other".into()
            }
        )
        .await
        .is_ok());
    fake.clear_failures();
    assert!(fake
        .add_link(
            None,
            &NewLink::Bridge {
                name: "oxbr-1".into()
            }
        )
        .await
        .is_ok());
}

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let sfx = &self.0;
        let _ = Command::new("ip")
            .args(["netns", "delete", &format!("oxtn-{sfx}")])
            .status();
        let _ = Command::new("ip")
            .args(["link", "delete", &format!("oxtb{sfx}")])
            .status();
    }
}

#[tokio::test]
async fn the_linux_host_behaves_as_the_fake() {
    if std::env::var("OXISTACK_NET_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set OXISTACK_NET_TESTS=1 (root, iproute2, nftables)");
        return;
    }
    let sfx = format!("{:06x}", std::process::id() % 0xff_ffff);
    let _cleanup = Cleanup(sfx.clone());
    behaves_like_a_host(&LinuxDatapath::new(), &sfx).await;
}
