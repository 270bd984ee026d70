use super::*;

/// RFC 7677, section 3: user `user`, password `pencil`.
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

#[test]
fn the_rfc_7677_exchange_computes_and_checks() {
    let first = ClientFirst::parse(CLIENT_FIRST).unwrap();
    assert_eq!(first, ClientFirst { user: "user".into(), nonce: "rOprNGfwEbeRWgbNEkqO".into() });
    assert_eq!(first.message(), CLIENT_FIRST);
    let server_first = ServerFirst::parse(SERVER_FIRST).unwrap();
    assert_eq!(server_first.message(), SERVER_FIRST);
    assert_eq!(server_first.iterations, 4096);

    let salted = salted_password("pencil", &server_first.salt, server_first.iterations);
    let keys = StoredKeys::derive(&salted);
    let final_ = ClientFinal::parse(CLIENT_FINAL).unwrap();
    let auth = auth_message(&first.bare(), SERVER_FIRST, &final_.without_proof());
    // The client's side: the proof it sends.
    assert_eq!(client_proof(&salted, &auth), final_.proof);
    assert_eq!(final_.message(), CLIENT_FINAL);
    // The server's side, from the stored keys alone.
    assert!(proof_matches(&keys.stored_key, &auth, &final_.proof));
    let signature = server_signature(&keys.server_key, &auth);
    assert_eq!(ServerFinal { signature }.message(), SERVER_FINAL);
    assert_eq!(ServerFinal::parse(SERVER_FINAL).unwrap().signature, signature);

    let wrong = salted_password("pencils", &server_first.salt, server_first.iterations);
    assert!(!proof_matches(&keys.stored_key, &auth, &client_proof(&wrong, &auth)));
    assert!(!proof_matches(&keys.stored_key, &format!("{auth}x"), &final_.proof), "another exchange");
}

#[test]
fn names_escape_commas_and_equals_signs() {
    for name in ["a,b", "a=b", "=2C", ",=,", "plain"] {
        assert_eq!(unescape_name(&escape_name(name)).unwrap(), name);
    }
    assert_eq!(escape_name("a,b=c"), "a=2Cb=3Dc");
    let first = ClientFirst::parse("n,,n=a=2Cb=3D,r=x").unwrap();
    assert_eq!(first.user, "a,b=");
    assert_eq!(first.bare(), "n=a=2Cb=3D,r=x");
    for bad in ["a=b", "a=", "a=2", "=41", ""] {
        assert!(unescape_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_grammar_refuses_what_is_not_supported() {
    let refused = |message: &str, expected: &str| {
        let err = ClientFirst::parse(message).unwrap_err().to_string();
        assert!(err.contains(expected), "{message}: {err}");
    };
    refused("y,,n=user,r=abc", "channel binding");
    refused("p=tls-unique,,n=user,r=abc", "channel binding");
    refused("n,a=admin,n=user,r=abc", "authorization identity");
    refused("n=user,r=abc", "GS2 header");
    refused("n,,m=ext,n=user,r=abc", "mandatory extensions");
    refused("n,,n=user,r=abc,tokenauth=true", "unsupported attribute");
    refused("n,,r=abc,n=user", "expected `n=`");
    refused("n,,n=user,r=", "a nonce has");
    refused("n,,n=user,r=a b", "printable");
    refused("n,,n=user", "`r=` is missing");
    refused("n,,n=,r=abc", "1 to 255");

    assert!(ClientFinal::parse("c=eSws,r=abc,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").is_err());
    assert!(ClientFinal::parse("c=biws,r=abc,p=AAAA").is_err(), "a short proof");
    assert!(ClientFinal::parse("c=biws,r=abc,x=1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").is_err());
    assert!(ClientFinal::parse("c=biws,r=abc,p=!!").is_err());
    assert!(ServerFirst::parse("r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000").is_err(), "too few iterations");
    assert!(ServerFirst::parse("r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=x").is_err());
    assert!(ServerFinal::parse("e=invalid-proof").unwrap_err().to_string().contains("invalid-proof"));
}

#[test]
fn nonces_are_fresh_and_fit_the_grammar() {
    let (a, b) = (nonce().unwrap(), nonce().unwrap());
    assert_ne!(a, b);
    assert!(ClientFirst::parse(&format!("n,,n=u,r={a}")).is_ok());
}
