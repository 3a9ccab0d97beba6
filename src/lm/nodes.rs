//! [`NodeTable`]: the generational slot table behind every backend's [`Node`] handles.
//!
//! A handle is a slot index plus the slot's generation when the node was made; releasing a node
//! bumps its slot's generation and puts the slot on the free list, so a stale handle (released,
//! or from another table) is an [`DecodeError::UnknownNode`], never another node that took its
//! slot.

use super::Node;
use crate::error::DecodeError;

/// Nodes of type `T` behind generational [`Node`] handles.
#[derive(Debug, Clone)]
pub(crate) struct NodeTable<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Default for NodeTable<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> NodeTable<T> {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Stores `value` in a free slot (or a new one) and returns its handle.
    pub(crate) fn insert(&mut self, value: T) -> Node {
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].value = Some(value);
                i
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    value: Some(value),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.handle(index)
    }

    /// The current handle of slot `index` (whatever it holds).
    pub(crate) fn handle(&self, index: u32) -> Node {
        Node {
            index,
            generation: self.slots[index as usize].generation,
        }
    }

    /// The node `node` names.
    ///
    /// # Errors
    /// [`DecodeError::UnknownNode`] for a released or foreign handle.
    pub(crate) fn get(&self, node: Node) -> Result<&T, DecodeError> {
        match self.slots.get(node.index as usize) {
            Some(Slot {
                generation,
                value: Some(v),
            }) if *generation == node.generation => Ok(v),
            _ => Err(DecodeError::UnknownNode { node: node.index }),
        }
    }

    /// Removes the node `node` names and returns it; `None` (and nothing changes) for a stale
    /// handle.
    // The remote and scripted backends' nodes live in the table alone; llama's track more, so
    // a build with neither has no caller.
    #[cfg(any(feature = "remote", test, feature = "test-util"))]
    pub(crate) fn release(&mut self, node: Node) -> Option<T> {
        self.get(node).ok()?;
        self.take(node.index)
    }

    /// Removes whatever slot `index` holds (a table's owner that tracks slots by index).
    pub(crate) fn take(&mut self, index: u32) -> Option<T> {
        let slot = self.slots.get_mut(index as usize)?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        Some(value)
    }

    /// The node in slot `index`, if one is there (for an owner that tracks slots by index).
    pub(crate) fn at(&self, index: u32) -> Option<&T> {
        self.slots.get(index as usize)?.value.as_ref()
    }

    /// As [`NodeTable::at`], mutable.
    pub(crate) fn at_mut(&mut self, index: u32) -> Option<&mut T> {
        self.slots.get_mut(index as usize)?.value.as_mut()
    }

    /// Every live node with its slot index.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.value.as_ref().map(|v| (i as u32, v)))
    }

    /// Nodes not yet released.
    pub(crate) fn count(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether no node is live.
    #[cfg(any(feature = "remote", test, feature = "test-util"))]
    pub(crate) fn is_empty(&self) -> bool {
        self.count() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_generational() {
        let mut t = NodeTable::new();
        let a = t.insert("a");
        let b = t.insert("b");
        assert_eq!((*t.get(a).unwrap(), *t.get(b).unwrap()), ("a", "b"));
        assert_eq!(t.count(), 2);
        assert_eq!(t.release(a), Some("a"));
        assert_eq!(t.count(), 1);
        // The stale handle is refused, also after its slot is reused by another node.
        assert!(matches!(
            t.get(a),
            Err(DecodeError::UnknownNode { node: 0 })
        ));
        let c = t.insert("c");
        assert_eq!(c.index, a.index, "the free slot is reused");
        assert_ne!(c, a);
        assert!(matches!(t.get(a), Err(DecodeError::UnknownNode { .. })));
        assert_eq!(t.release(a), None, "releasing twice does nothing");
        assert_eq!(*t.get(c).unwrap(), "c");
        // A handle past the end of the table.
        let far = Node {
            index: 99,
            generation: 0,
        };
        assert!(t.get(far).is_err());
        assert_eq!(t.release(far), None);
        assert_eq!(t.take(1), Some("b"));
        assert_eq!(t.take(1), None);
        assert!(t.get(b).is_err());
        assert_eq!(t.handle(1).generation, 1);
        t.release(c);
        assert!(t.is_empty());
    }
}
