fn main() {
    gst_plugin_version_helper::info();
    // The demo avatar and its models are compiled in; a file added there must rebuild the plugin.
    println!("cargo:rerun-if-changed=models/demo");
}
