//! What the machine does to memory that the figures depend on.

use dime::vm::free_page_reporting;

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
