//! The whole suite, through the macro adapters use, over the correct reference store in each
//! flavour. Each store declares its own capabilities, which is what the cases check.

mod support;

narvik_conformance::store_tests!(async { support::ReferenceStore::new() });

mod required_only {
    use super::support;

    narvik_conformance::store_tests!(async { support::RequiredOnlyStore::default() });
}

mod ttl_native {
    use super::support;

    narvik_conformance::store_tests!(async { support::ReferenceStore::ttl_native() });
}
