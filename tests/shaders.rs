//! Every shader parses and validates with naga, and every entry point translates to SPIR-V
//! (Vulkan), MSL (Metal) and HLSL (DX12): a shader that would break on a back end we cannot run
//! here fails in this plain test, with no GPU.

use ddpm::gpu::kernel::{parse, WORKGROUP_OVERRIDE};
use ddpm::shaders::ALL;

#[test]
fn every_shader_validates_and_translates_to_every_backend() {
    let mut n_entry_points = 0;
    for shader in ALL {
        let (module, info) = parse(shader).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !module.entry_points.is_empty(),
            "{} has no entry point",
            shader.name
        );
        for ep in &module.entry_points {
            let name = format!("{}.wgsl:{}", shader.name, ep.name);
            let mut constants = naga::back::PipelineConstants::default();
            constants.insert(WORKGROUP_OVERRIDE.to_owned(), 256.0);
            let (module, info) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((ep.stage, &ep.name)),
                &constants,
            )
            .unwrap_or_else(|e| panic!("{name}: overrides: {e}"));

            let spv_options = naga::back::spv::PipelineOptions {
                shader_stage: ep.stage,
                entry_point: ep.name.clone(),
            };
            naga::back::spv::write_vec(&module, &info, &Default::default(), Some(&spv_options))
                .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));

            let msl_options = naga::back::msl::PipelineOptions {
                entry_point: Some((ep.stage, ep.name.clone())),
                ..Default::default()
            };
            naga::back::msl::write_string(&module, &info, &Default::default(), &msl_options)
                .unwrap_or_else(|e| panic!("{name}: MSL: {e}"));

            let hlsl_options = naga::back::hlsl::PipelineOptions {
                entry_point: Some((ep.stage, ep.name.clone())),
            };
            let hlsl_backend_options = naga::back::hlsl::Options::default();
            let mut hlsl = String::new();
            naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_backend_options, &hlsl_options)
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{name}: HLSL: {e}"));
            n_entry_points += 1;
        }
    }
    assert!(
        n_entry_points >= 20,
        "only {n_entry_points} entry points found"
    );
}

#[test]
fn a_broken_shader_is_reported_with_its_name() {
    let broken = ddpm::gpu::Shader {
        name: "broken",
        source: "fn f() -> u32 { return 1.0; }",
    };
    let err = parse(&broken).expect_err("the shader is invalid");
    assert!(err.starts_with("broken.wgsl"), "{err}");
}
