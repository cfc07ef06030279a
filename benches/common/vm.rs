//! What the machine does to memory that the figures depend on.

use std::fs;

/// The virtio device id of a memory balloon.
const BALLOON_DEVICE: &str = "0x0005";
/// Its feature bit for free page reporting (`VIRTIO_BALLOON_F_REPORTING`).
const REPORTING_BIT: usize = 5;

/// Whether a virtio memory balloon with free page reporting is bound: the
/// VM then hands memory it frees back to its host, and the next use of
/// that memory faults on the host (on the VM these benches were measured
/// on, touching such memory took about 2.3 s per GB, against 0.44 s once
/// reporting was off). Figures that touch new memory (page cache, new
/// buffers) then swing from run to run. None when there is no such device.
pub fn free_page_reporting() -> Option<bool> {
    let devices = fs::read_dir("/sys/bus/virtio/devices").ok()?;
    let mut found = None;
    for d in devices.flatten() {
        let dir = d.path();
        let id = fs::read_to_string(dir.join("device")).unwrap_or_default();
        if id.trim() != BALLOON_DEVICE {
            continue;
        }
        let features = fs::read_to_string(dir.join("features")).unwrap_or_default();
        let reporting = features.as_bytes().get(REPORTING_BIT) == Some(&b'1');
        let bound = dir.join("driver").exists();
        found = Some(found.unwrap_or(false) || (reporting && bound));
    }
    found
}

/// One line saying [`free_page_reporting`], for a bench's header.
pub fn memory_note() -> String {
    match free_page_reporting() {
        Some(true) => "virtio-balloon free page reporting: on -- memory the VM frees goes back \
                       to its host and faults there when used again, so runs that touch new \
                       memory swing (benches/README.md, \"Figures on a VM\")"
            .into(),
        Some(false) => "virtio-balloon free page reporting: off".into(),
        None => "no virtio memory balloon".into(),
    }
}
