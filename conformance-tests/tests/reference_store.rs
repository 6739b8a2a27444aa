//! The whole suite, through the macro adapters use, over the reference store in each
//! capability mode.

mod support;

narvik_conformance::store_tests!(async { support::ReferenceStore::new() });

mod required_only {
    use super::support;

    narvik_conformance::store_tests!(
        async { support::RequiredOnlyStore::default() },
        capabilities = narvik_conformance::Capabilities::REQUIRED_ONLY
    );
}

mod ttl_native {
    use super::support;

    narvik_conformance::store_tests!(
        async { support::TtlStore::default() },
        capabilities = narvik_conformance::Capabilities::TTL_NATIVE,
    );
}
