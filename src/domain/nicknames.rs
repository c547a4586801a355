//! Common English nicknames and the given name each stands for. Only
//! unambiguous ones: "Chris", "Sam" or "Alex" could be several names.

const NICKNAMES: &[(&str, &str)] = &[
    ("abby", "abigail"),
    ("al", "albert"),
    ("andy", "andrew"),
    ("ben", "benjamin"),
    ("benny", "benjamin"),
    ("beth", "elizabeth"),
    ("betsy", "elizabeth"),
    ("betty", "elizabeth"),
    ("bill", "william"),
    ("billy", "william"),
    ("bob", "robert"),
    ("bobby", "robert"),
    ("cathy", "catherine"),
    ("chuck", "charles"),
    ("dan", "daniel"),
    ("danny", "daniel"),
    ("dave", "david"),
    ("davy", "david"),
    ("debbie", "deborah"),
    ("dick", "richard"),
    ("drew", "andrew"),
    ("ed", "edward"),
    ("eddie", "edward"),
    ("eliza", "elizabeth"),
    ("greg", "gregory"),
    ("jen", "jennifer"),
    ("jenny", "jennifer"),
    ("jim", "james"),
    ("jimmy", "james"),
    ("joe", "joseph"),
    ("joey", "joseph"),
    ("kate", "katherine"),
    ("kathy", "katherine"),
    ("katie", "katherine"),
    ("larry", "lawrence"),
    ("liz", "elizabeth"),
    ("lizzie", "elizabeth"),
    ("maggie", "margaret"),
    ("matt", "matthew"),
    ("meg", "margaret"),
    ("mike", "michael"),
    ("mikey", "michael"),
    ("nick", "nicholas"),
    ("patty", "patricia"),
    ("peggy", "margaret"),
    ("rich", "richard"),
    ("richie", "richard"),
    ("rick", "richard"),
    ("rob", "robert"),
    ("robbie", "robert"),
    ("steve", "steven"),
    ("sue", "susan"),
    ("susie", "susan"),
    ("ted", "edward"),
    ("tom", "thomas"),
    ("tommy", "thomas"),
    ("tony", "anthony"),
    ("will", "william"),
    ("willy", "william"),
];

/// The given name a canonical nickname stands for.
pub fn given_name_for(canonical: &str) -> Option<&'static str> {
    NICKNAMES
        .binary_search_by(|(nickname, _)| (*nickname).cmp(canonical))
        .ok()
        .map(|at| NICKNAMES[at].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_so_lookups_find_every_entry() {
        assert!(NICKNAMES.windows(2).all(|pair| pair[0].0 < pair[1].0));
        for (nickname, name) in NICKNAMES {
            assert_eq!(given_name_for(nickname), Some(*name));
        }
    }

    #[test]
    fn no_name_is_itself_a_nickname_so_mapping_is_idempotent() {
        for (_, name) in NICKNAMES {
            assert_eq!(given_name_for(name), None, "{name}");
        }
    }
}
