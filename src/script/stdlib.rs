//! The stdlib: Rhai modules from the top-level `stdlib/` folder, embedded
//! in the binary with `include_str!`, importable by name through a static
//! module resolver (`import "names" as names;`) and registered globally as
//! well, so that `ascii_fold(...)`, `sam_account_name(...)` and friends need
//! no import. Their `///` comments are their `help()` text. The helpers
//! Rhai lacks the primitives for are Rust, in [`super::stdlib_fns`].

use rhai::module_resolvers::{FileModuleResolver, ModuleResolversCollection, StaticModuleResolver};
use rhai::{Engine, Module, Scope, Shared, exported_module};

/// The modules: import name and source.
pub const MODULES: &[(&str, &str)] = &[
    ("names", include_str!("../../stdlib/names.rhai")),
    ("ad", include_str!("../../stdlib/ad.rhai")),
    ("hr", include_str!("../../stdlib/hr.rhai")),
    ("graph", include_str!("../../stdlib/graph.rhai")),
];

/// Registers the Rust helpers, then compiles each module with `engine`
/// (so the modules may call every binding), makes its functions global and
/// importable by name; other `import` paths still load script files as
/// before (Rhai's file resolver comes second). A module that does not compile is a bug caught by
/// the tests; it is reported on stderr and left out rather than panicking.
pub fn register(engine: &mut Engine) {
    let fns: Shared<Module> = exported_module!(super::stdlib_fns::stdlib_fns).into();
    engine.register_global_module(fns.clone());
    let mut resolver = StaticModuleResolver::new();
    let mut modules = Vec::new();
    for (name, source) in MODULES {
        let built = engine
            .compile(*source)
            .map_err(|e| e.to_string())
            .and_then(|ast| {
                Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(|e| e.to_string())
            });
        match built {
            Ok(m) => modules.push((name, m)),
            Err(e) => eprintln!("idsync: stdlib module '{name}' does not compile: {e}"),
        }
    }
    for (name, m) in modules {
        let mut imported = m.clone();
        // `import "ad" as ad;` also reaches the Rust helpers (`ad::filetime_to_date`).
        if *name == "ad" {
            imported.combine_flatten(fns.as_ref().clone());
        }
        resolver.insert(*name, imported);
        engine.register_global_module(Shared::new(m));
    }
    let mut all = ModuleResolversCollection::new();
    all.push(resolver);
    all.push(FileModuleResolver::new());
    engine.set_module_resolver(all);
}
