//! The privacy rules of ARCHITECTURE.md §4 as pure functions: which messages are stored and
//! which users may see them.

use std::collections::BTreeSet;

use crate::model::{Address, Audience, ChannelFlags, Login, Visibility};

/// The configuration the rules depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyOptions {
    /// Internal mail with a shared user channel is visible to every user.
    pub share_internal: bool,
    /// Whether an address nobody configured counts as shared.
    pub default_shared: bool,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            share_internal: true,
            default_shared: true,
        }
    }
}

/// Who owns a channel, as far as classification cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    User(Login),
    /// A contact who is not a Threads user: an outside party.
    Outside,
}

/// What the directory knows of one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelView {
    pub owner: Owner,
    pub flags: ChannelFlags,
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Rule 1: an excluded address takes part; nothing of the message may be written.
    Excluded {
        address: Address,
    },
    Store(Audience),
}

/// Classifies a message by its party addresses.
///
/// `lookup` answers for the addresses the directory knows; any other address counts as an
/// outside channel with default flags. Callers remove the daemon's own ingest addresses
/// from `parties` first.
pub fn classify<'a, I, L>(parties: I, lookup: L, options: PolicyOptions) -> Decision
where
    I: IntoIterator<Item = &'a Address>,
    L: Fn(&Address) -> Option<ChannelView>,
{
    let default = ChannelView {
        owner: Owner::Outside,
        flags: ChannelFlags::default_with(options.default_shared),
    };
    let mut users = BTreeSet::new();
    let mut any_user_shared = false;
    let mut outside = 0usize;
    let mut outside_shared = false;
    let mut outside_active = false;

    for address in parties {
        let view = lookup(address).unwrap_or_else(|| default.clone());
        if view.flags.exclude {
            return Decision::Excluded {
                address: address.clone(),
            };
        }
        match view.owner {
            Owner::User(login) => {
                any_user_shared |= view.flags.shared;
                users.insert(login);
            }
            Owner::Outside => {
                outside += 1;
                outside_shared |= view.flags.shared;
                outside_active |= view.flags.active;
            }
        }
    }

    let everyone = if outside > 0 {
        outside_shared
    } else {
        options.share_internal && any_user_shared
    };
    let visibility = if everyone {
        Visibility::All
    } else {
        Visibility::Users(users)
    };
    Decision::Store(Audience {
        visibility,
        inactive_only: outside > 0 && !outside_active,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn login(s: &str) -> Login {
        Login::parse(s).unwrap()
    }

    fn flags(exclude: bool, active: bool, shared: bool) -> ChannelFlags {
        ChannelFlags {
            exclude,
            active,
            shared,
        }
    }

    /// A directory of `n` addresses `a0@x.test`…, each with an owner and flags.
    #[derive(Debug, Clone)]
    struct Dir {
        channels: HashMap<Address, ChannelView>,
    }

    impl Dir {
        fn lookup(&self) -> impl Fn(&Address) -> Option<ChannelView> + '_ {
            |a| self.channels.get(a).cloned()
        }
    }

    fn arb_view() -> impl Strategy<Value = Option<ChannelView>> {
        let owner = prop_oneof![
            Just(Owner::Outside),
            (0..3u8).prop_map(|u| Owner::User(login(&format!("u{u}")))),
        ];
        let exclude = prop_oneof![9 => Just(false), 1 => Just(true)];
        let view =
            (owner, exclude, any::<bool>(), any::<bool>()).prop_map(|(o, e, a, s)| ChannelView {
                owner: o,
                flags: flags(e, a, s),
            });
        prop::option::weighted(0.8, view)
    }

    fn arb_case() -> impl Strategy<Value = (Dir, Vec<Address>, PolicyOptions)> {
        let dir = prop::collection::vec(arb_view(), 8).prop_map(|views| Dir {
            channels: views
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (addr(&format!("a{i}@x.test")), v)))
                .collect(),
        });
        let parties = prop::collection::btree_set(0..8usize, 0..6).prop_map(|set| {
            set.into_iter()
                .map(|i| addr(&format!("a{i}@x.test")))
                .collect()
        });
        let options =
            (any::<bool>(), any::<bool>()).prop_map(|(share_internal, default_shared)| {
                PolicyOptions {
                    share_internal,
                    default_shared,
                }
            });
        (dir, parties, options)
    }

    fn view_of(dir: &Dir, a: &Address, options: PolicyOptions) -> ChannelView {
        dir.channels.get(a).cloned().unwrap_or(ChannelView {
            owner: Owner::Outside,
            flags: ChannelFlags::default_with(options.default_shared),
        })
    }

    fn users_in(dir: &Dir, parties: &[Address], options: PolicyOptions) -> BTreeSet<Login> {
        parties
            .iter()
            .filter_map(|a| match view_of(dir, a, options).owner {
                Owner::User(l) => Some(l),
                Owner::Outside => None,
            })
            .collect()
    }

    fn outside_views(dir: &Dir, parties: &[Address], o: PolicyOptions) -> Vec<ChannelView> {
        parties
            .iter()
            .map(|a| view_of(dir, a, o))
            .filter(|v| v.owner == Owner::Outside)
            .collect()
    }

    proptest! {
        #[test]
        fn an_excluded_address_always_prevents_storage((dir, parties, o) in arb_case()) {
            let any_excluded = parties.iter().any(|a| view_of(&dir, a, o).flags.exclude);
            let decision = classify(&parties, dir.lookup(), o);
            prop_assert_eq!(any_excluded, matches!(decision, Decision::Excluded { .. }));
        }

        #[test]
        fn private_outside_mail_is_visible_to_exactly_the_addressed_users(
            (dir, parties, o) in arb_case()
        ) {
            let outside = outside_views(&dir, &parties, o);
            let Decision::Store(audience) = classify(&parties, dir.lookup(), o) else {
                return Ok(());
            };
            if !outside.is_empty() && outside.iter().all(|v| !v.flags.shared) {
                let expected = Visibility::Users(users_in(&dir, &parties, o));
                prop_assert_eq!(audience.visibility, expected);
            }
        }

        #[test]
        fn one_shared_outside_channel_makes_mail_visible_to_all(
            (dir, parties, o) in arb_case()
        ) {
            let outside = outside_views(&dir, &parties, o);
            let Decision::Store(audience) = classify(&parties, dir.lookup(), o) else {
                return Ok(());
            };
            if outside.iter().any(|v| v.flags.shared) {
                prop_assert_eq!(audience.visibility, Visibility::All);
            }
        }

        #[test]
        fn internal_mail_follows_user_channels_and_share_internal(
            (dir, parties, o) in arb_case()
        ) {
            if !outside_views(&dir, &parties, o).is_empty() {
                return Ok(());
            }
            let Decision::Store(audience) = classify(&parties, dir.lookup(), o) else {
                return Ok(());
            };
            let any_shared = parties.iter().any(|a| view_of(&dir, a, o).flags.shared);
            let expected = if o.share_internal && any_shared {
                Visibility::All
            } else {
                Visibility::Users(users_in(&dir, &parties, o))
            };
            prop_assert_eq!(audience.visibility, expected);
            prop_assert!(!audience.inactive_only);
        }

        #[test]
        fn inactive_only_mail_is_hidden_from_show_only_active_users(
            (dir, parties, o) in arb_case()
        ) {
            let outside = outside_views(&dir, &parties, o);
            let Decision::Store(audience) = classify(&parties, dir.lookup(), o) else {
                return Ok(());
            };
            let inactive_only = !outside.is_empty() && outside.iter().all(|v| !v.flags.active);
            prop_assert_eq!(audience.inactive_only, inactive_only);
            for u in 0..3 {
                let user = login(&format!("u{u}"));
                if inactive_only {
                    prop_assert!(!audience.admits(&user, true));
                }
                // Without the preference, inactive-only mail is as visible as any other.
                let plain = Audience { inactive_only: false, ..audience.clone() };
                prop_assert_eq!(audience.admits(&user, false), plain.admits(&user, false));
            }
        }

        #[test]
        fn classification_ignores_party_order_and_repeats((dir, parties, o) in arb_case()) {
            let mut shuffled: Vec<Address> = parties.iter().rev().cloned().collect();
            shuffled.extend(parties.iter().cloned());
            let a = classify(&parties, dir.lookup(), o);
            let b = classify(&shuffled, dir.lookup(), o);
            let excluded = |d: &Decision| matches!(d, Decision::Excluded { .. });
            prop_assert_eq!(excluded(&a), excluded(&b));
            if let (Decision::Store(a), Decision::Store(b)) = (a, b) {
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn private_message_to_no_user_is_visible_to_nobody() {
        let outsider = addr("client@acme.test");
        let dir = Dir {
            channels: HashMap::from([(
                outsider.clone(),
                ChannelView {
                    owner: Owner::Outside,
                    flags: flags(false, true, false),
                },
            )]),
        };
        let decision = classify([&outsider], dir.lookup(), PolicyOptions::default());
        let expected = Audience {
            visibility: Visibility::Users(BTreeSet::new()),
            inactive_only: false,
        };
        assert_eq!(decision, Decision::Store(expected));
    }

    #[test]
    fn unknown_addresses_take_the_configured_default() {
        let stranger = addr("stranger@elsewhere.test");
        let private = PolicyOptions {
            default_shared: false,
            ..PolicyOptions::default()
        };
        let Decision::Store(aud) = classify([&stranger], |_| None, private) else {
            panic!("stored expected");
        };
        assert_eq!(aud.visibility, Visibility::Users(BTreeSet::new()));
        let Decision::Store(aud) = classify([&stranger], |_| None, PolicyOptions::default()) else {
            panic!("stored expected");
        };
        assert_eq!(aud.visibility, Visibility::All);
    }
}
