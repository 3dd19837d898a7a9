//! What a listener serves, read from the contracts' descriptors: the files
//! its reflection describes and the method paths its metrics label.

use std::collections::HashSet;

/// Fully-qualified name of the health service.
pub const HEALTH: &str = "grpc.health.v1.Health";
/// Fully-qualified name of reflection v1.
pub const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
/// Fully-qualified name of reflection v1alpha.
pub const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// The descriptors reflection serves on a listener: the files defining its
/// services and the files they import, with every service the listener
/// does not serve taken out (client messages reuse some internal message
/// types), so the public port does not describe the internal RPCs.
pub fn descriptors_of(service_names: &[&str]) -> prost_types::FileDescriptorSet {
    use prost::Message;
    let all = prost_types::FileDescriptorSet::decode(hubbub_proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
    let mut wanted: Vec<String> = all
        .file
        .iter()
        .filter(|file| {
            file.service
                .iter()
                .any(|service| service_names.contains(&format!("{}.{}", file.package(), service.name()).as_str()))
        })
        .map(|file| file.name().to_owned())
        .collect();
    let mut index = 0;
    while index < wanted.len() {
        if let Some(file) = all.file.iter().find(|file| file.name() == wanted[index]) {
            for dependency in &file.dependency {
                if !wanted.contains(dependency) {
                    wanted.push(dependency.clone());
                }
            }
        }
        index += 1;
    }
    let mut file: Vec<prost_types::FileDescriptorProto> = all
        .file
        .into_iter()
        .filter(|file| wanted.iter().any(|name| name == file.name()))
        .collect();
    for file in &mut file {
        let package = file.package().to_owned();
        file.service
            .retain(|service| service_names.contains(&format!("{package}.{}", service.name()).as_str()));
    }
    prost_types::FileDescriptorSet { file }
}

/// The paths a listener serves, for metrics labels.
pub fn known_methods(service_names: &[&str]) -> HashSet<String> {
    use prost::Message;
    let mut known = HashSet::new();
    if let Ok(set) = prost_types::FileDescriptorSet::decode(hubbub_proto::FILE_DESCRIPTOR_SET) {
        for file in &set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                if service_names.contains(&full.as_str()) {
                    known.extend(service.method.iter().map(|m| format!("/{full}/{}", m.name())));
                }
            }
        }
    }
    known.insert(format!("/{HEALTH}/Check"));
    known.insert(format!("/{HEALTH}/Watch"));
    known.insert(format!("/{REFLECTION_V1}/ServerReflectionInfo"));
    known.insert(format!("/{REFLECTION_V1ALPHA}/ServerReflectionInfo"));
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_describes_only_what_a_listener_serves() {
        let public = descriptors_of(&["hubbub.v1.ClientApi"]);
        let names: Vec<&str> = public.file.iter().map(|file| file.name()).collect();
        assert!(names.contains(&"hubbub/v1/client_api.proto"), "{names:?}");
        assert!(
            names.contains(&"hubbub/v1/room_message.proto"),
            "imports come along: {names:?}"
        );
        for internal in ["presence.proto", "gateway_control.proto", "room.proto"] {
            assert!(
                !names.contains(&format!("hubbub/v1/{internal}").as_str()),
                "{internal}: {names:?}"
            );
        }
        let services: Vec<&str> = public
            .file
            .iter()
            .flat_map(|f| f.service.iter().map(|s| s.name()))
            .collect();
        assert_eq!(
            services,
            vec!["ClientApi"],
            "message types only from the internal files"
        );
    }

    #[test]
    fn known_methods_are_those_of_the_served_services_only() {
        let known = known_methods(&["hubbub.v1.Room"]);
        assert!(known.contains("/hubbub.v1.Room/Publish"));
        assert!(known.contains("/grpc.health.v1.Health/Check"));
        assert!(!known.contains("/hubbub.v1.Presence/LocateUsers"));
    }
}
